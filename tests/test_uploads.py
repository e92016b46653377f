"""denoiser.uploads: which paths a request may read, and how an accepted file becomes pixels.

Real files in a temporary folder: an "upload folder" and a "secret" folder beside it, with real images,
symlinks and `..` paths between them. The end-to-end answers of the running app are in test_app_api.py.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_fixtures import bad_files, encoded, exif_rotated_jpeg, photo
from denoiser.uploads import NOT_AVAILABLE, UploadError, read_upload, resolve_upload

MAX_PIXELS = 2048 * 2048


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """An upload folder holding one image, and a secret image outside it."""
    uploads, outside = tmp_path / "uploads", tmp_path / "outside"
    (uploads / "abc").mkdir(parents=True)
    outside.mkdir()
    Image.fromarray(photo(40, 30)).save(uploads / "abc" / "mine.png")
    Image.fromarray(photo(40, 30, seed=1)).save(outside / "secret.png")
    (outside / "notes.txt").write_text("not an image")
    (outside / "empty.png").write_bytes(b"")
    return uploads, outside


def refusal(path: object, roots: list[Path]) -> str:
    with pytest.raises(UploadError) as err:
        resolve_upload(path, roots=roots)
    return str(err.value)


def test_a_file_inside_the_upload_folder_is_accepted(folders):
    uploads, _ = folders
    assert resolve_upload(uploads / "abc" / "mine.png", roots=[uploads]) == (uploads / "abc" / "mine.png").resolve()


def test_every_path_outside_gets_the_same_answer_whatever_lies_there(folders, caplog):
    uploads, outside = folders
    (uploads / "link.png").symlink_to(outside / "secret.png")  # a link inside that points outside
    (uploads / "dirlink").symlink_to(outside, target_is_directory=True)
    attempts = [
        outside / "secret.png",  # an existing image
        outside / "notes.txt",  # not an image
        outside / "empty.png",  # empty
        outside / "missing.png",  # not there at all
        outside,  # a folder
        uploads / ".." / "outside" / "secret.png",  # `..` out of the upload folder
        str(uploads) + "/../outside/secret.png",
        uploads / "link.png",
        uploads / "dirlink" / "secret.png",
        "/etc/hostname",
        uploads / "abc" / "gone.png",  # inside, but no longer there
        uploads,  # the upload folder itself
        "bad\0path.png",
        ["not", "a", "path"],
        12,
    ]
    with caplog.at_level(logging.WARNING, logger="denoiser.uploads"):
        answers = {refusal(path, [uploads]) for path in attempts}
    assert answers == {NOT_AVAILABLE}
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == len(attempts) - 2, "each refused path outside the folders is logged at WARNING"
    assert all("refused" in r.getMessage() for r in warned)


def test_a_relative_path_resolves_from_the_working_directory(folders, monkeypatch):
    uploads, outside = folders
    monkeypatch.chdir(uploads)
    assert resolve_upload("abc/mine.png", roots=[uploads]).name == "mine.png"
    assert refusal("../outside/secret.png", [uploads]) == NOT_AVAILABLE


def test_a_root_given_through_a_symlink_still_matches(folders, tmp_path):
    uploads, _ = folders
    alias = tmp_path / "alias"
    alias.symlink_to(uploads, target_is_directory=True)
    assert resolve_upload(alias / "abc" / "mine.png", roots=[alias]).name == "mine.png"
    assert resolve_upload(uploads / "abc" / "mine.png", roots=[alias]).name == "mine.png"


def test_a_sibling_folder_with_a_longer_name_is_not_inside(tmp_path):
    uploads, sibling = tmp_path / "up", tmp_path / "up-evil"
    uploads.mkdir()
    sibling.mkdir()
    Image.fromarray(photo(8, 8)).save(sibling / "x.png")
    assert refusal(sibling / "x.png", [uploads]) == NOT_AVAILABLE


@pytest.mark.parametrize("name", sorted(bad_files()))
def test_accepted_but_broken_files_get_their_own_clear_message(tmp_path, name):
    data, message = bad_files()[name]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(UploadError, match=message):
        read_upload(tmp_path / name, roots=[tmp_path], max_pixels=MAX_PIXELS)


def test_colour_alpha_and_name(tmp_path):
    rgba = Image.fromarray(photo(48, 40))
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (40, 1))))
    rgba.save(tmp_path / "été.png")
    loaded = read_upload(tmp_path / "été.png", roots=[tmp_path], max_pixels=MAX_PIXELS)
    assert loaded.pixels.shape == (40, 48, 3) and loaded.pixels.dtype == np.float32
    assert np.array_equal(np.rint(loaded.pixels * 255).astype(np.uint8), photo(48, 40))
    assert loaded.alpha is not None and loaded.alpha[0, 0] == 0.0 and loaded.alpha[0, -1] == 1.0
    assert loaded.name == "été" and any("Transparency" in note for note in loaded.notes)
    assert read_upload(tmp_path / "été.png", roots=[tmp_path], max_pixels=MAX_PIXELS, name="given").name == "given"
    assert loaded.format == "PNG"


def test_the_file_format_is_known_after_conversion(tmp_path):
    Image.fromarray(photo(16, 16)).convert("P").save(tmp_path / "palette.gif")  # decoded through a conversion
    Image.fromarray(photo(16, 16)).save(tmp_path / "photo.jpg", quality=90)
    assert read_upload(tmp_path / "palette.gif", roots=[tmp_path], max_pixels=MAX_PIXELS).format == "GIF"
    assert read_upload(tmp_path / "photo.jpg", roots=[tmp_path], max_pixels=MAX_PIXELS).format == "JPEG"


def test_an_opaque_alpha_channel_is_dropped(tmp_path):
    rgba = Image.fromarray(photo(16, 16)).convert("RGBA")
    rgba.save(tmp_path / "opaque.png")
    assert read_upload(tmp_path / "opaque.png", roots=[tmp_path], max_pixels=MAX_PIXELS).alpha is None


def test_16_bit_grayscale_keeps_its_precision(tmp_path):
    values = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16  # steps finer than 8 bits
    Image.fromarray(values).save(tmp_path / "gray16.png")
    loaded = read_upload(tmp_path / "gray16.png", roots=[tmp_path], max_pixels=MAX_PIXELS)
    assert loaded.pixels.shape == (64, 64)
    assert np.abs(loaded.pixels - values / 65535).max() < 1e-6
    assert any("16-bit" in note or "bit-depth" in note for note in loaded.notes)


def test_exif_rotation_is_applied(tmp_path):
    (tmp_path / "rotated.jpg").write_bytes(exif_rotated_jpeg(48, 40))
    assert read_upload(tmp_path / "rotated.jpg", roots=[tmp_path], max_pixels=MAX_PIXELS).pixels.shape == (48, 40, 3)


def test_the_pixel_limit_is_checked_from_the_header(tmp_path):
    (tmp_path / "big.png").write_bytes(encoded(Image.new("L", (300, 200)), "PNG"))
    with pytest.raises(UploadError, match="300×200 pixels"):
        read_upload(tmp_path / "big.png", roots=[tmp_path], max_pixels=300 * 200 - 1)
    assert read_upload(tmp_path / "big.png", roots=[tmp_path], max_pixels=300 * 200).pixels.shape == (200, 300)


def test_float_images_outside_0_1_are_rescaled_with_a_note(tmp_path):
    Image.fromarray(np.linspace(-2, 6, 100, dtype=np.float32).reshape(10, 10), mode="F").save(tmp_path / "f.tiff")
    loaded = read_upload(tmp_path / "f.tiff", roots=[tmp_path], max_pixels=MAX_PIXELS)
    assert loaded.pixels.min() == 0.0 and loaded.pixels.max() == 1.0
    assert any("rescaled" in note for note in loaded.notes)


def test_symlinked_upload_inside_the_folder_is_read_from_its_real_place(folders):
    uploads, _ = folders
    os.symlink(uploads / "abc" / "mine.png", uploads / "alias.png")
    assert read_upload(uploads / "alias.png", roots=[uploads], max_pixels=MAX_PIXELS).name == "mine"
