"""The photo collection and its held-out split (denoiser.photos), on a small zip in the real layout and on the real one."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from denoiser import photos

# The split that training must never see. Pinned: a silent change would leak validation photos into training.
REAL_VALIDATION = [
    "bsd232/106020.jpg", "bsd232/113016.jpg", "bsd232/138078.jpg", "bsd232/159029.jpg", "bsd232/159045.jpg",
    "bsd232/16052.jpg", "bsd232/176035.jpg", "bsd232/183087.jpg", "bsd232/189003.jpg", "bsd232/22090.jpg",
    "bsd232/301007.jpg", "bsd232/361010.jpg", "bsd232/376001.jpg", "bsd232/38092.jpg", "bsd232/42078.jpg",
    "bsd232/46076.jpg", "bsd232/55073.jpg", "bsd232/61060.jpg", "t91/t11.png", "t91/t17.png", "t91/t25.png",
    "t91/t49.png", "t91/t59.png", "t91/tt19.png", "t91/tt24.png",
]


def write_collection(root: Path, *, bsd: int = 40, t91: int = 15, size: int = 24) -> tuple[Path, Path]:
    """The same small collection as a folder and as a zip (with the folder entries a real zip has)."""
    rng = np.random.default_rng(0)
    folder = root / "photos"
    for sub, n, ext in (("bsd232", bsd, "jpg"), ("t91", t91, "png")):
        (folder / sub).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(smooth_image(rng, size=size)).save(folder / sub / f"{sub[0]}{i}.{ext}")
    (folder / "README.txt").write_text("not a photo")
    archive = root / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for sub in ("bsd232", "t91"):
            z.writestr(f"{sub}/", "")
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(folder).as_posix())
    return folder, archive


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_collection(tmp_path_factory.mktemp("collection"))


def test_names_are_the_photos_in_sub_folders_sorted(collection: tuple[Path, Path]) -> None:
    folder, archive = collection
    names = photos.photo_names(archive)
    assert names == photos.photo_names(folder)
    assert len(names) == 55 and names == sorted(names)
    assert all(n.startswith(("bsd232/", "t91/")) and n.endswith((".jpg", ".png")) for n in names)


def test_split_is_stratified_disjoint_and_repeatable(collection: tuple[Path, Path]) -> None:
    names = photos.photo_names(collection[1])
    held = photos.validation_names(names)
    assert len(held) == 25 and held == sorted(held)
    assert sum(n.startswith("bsd232/") for n in held) == 18  # 25 * 40/55 = 18.2
    assert sum(n.startswith("t91/") for n in held) == 7  # 25 * 15/55 = 6.8
    train = photos.training_names(names)
    assert not set(train) & set(held) and sorted(train + held) == names
    assert photos.validation_names(list(reversed(names))) == held  # the order given does not matter
    assert photos.validation_names(names, seed=1) != held


def test_adding_photos_keeps_most_of_the_split(tmp_path: Path, collection: tuple[Path, Path]) -> None:
    names = photos.photo_names(collection[1])
    grown = names + [f"bsd232/new{i}.jpg" for i in range(4)]
    before, after = set(photos.validation_names(names)), set(photos.validation_names(grown))
    assert len(before & after) >= 21  # at most the 4 newcomers take a place


def test_photos_load_at_native_size(collection: tuple[Path, Path]) -> None:
    folder, archive = collection
    names = photos.validation_names(photos.photo_names(archive))[:3]
    from_zip, from_folder = photos.load_photos(names, archive), photos.load_photos(names, folder)
    assert list(from_zip) == names
    for name in names:
        assert from_zip[name].shape == (24, 24, 3) and from_zip[name].dtype == np.uint8
        assert (from_zip[name] == from_folder[name]).all()


def test_bad_collections_get_clear_errors(tmp_path: Path, collection: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="no photo collection"):
        photos.photo_names(tmp_path / "missing.zip")
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable zip"):
        photos.photo_names(tmp_path / "broken.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no photos"):
        photos.photo_names(tmp_path / "empty")
    with pytest.raises(ValueError, match="has no photo"):
        photos.load_photos(["bsd232/nope.jpg"], collection[1])
    with pytest.raises(ValueError, match="count"):
        photos.validation_names(["a/b.jpg"], count=2)


def test_a_damaged_photo_is_named(tmp_path: Path) -> None:
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("bsd232/bad.jpg", b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match="bsd232/bad.jpg cannot be decoded"):
        photos.load_photos(["bsd232/bad.jpg"], archive)


@pytest.mark.skipif(not photos.PHOTOS_ZIP.exists(), reason=f"the photo collection is not at {photos.PHOTOS_ZIP}")
def test_the_real_split_is_pinned() -> None:
    names = photos.photo_names()
    assert len(names) == 323
    assert photos.validation_names(names) == REAL_VALIDATION
    assert len(photos.training_names(names)) == 298
