"""The demo's API, driven through gradio_client and raw HTTP against the app launched in-process (app.py).

Covers each named endpoint, each method, each supported kind of upload and each bad input, with the
text the user gets asserted; attacks on the file paths a request may name, through the queue's call route
(with and without Gradio's `meta` marker) and the file route; strict reading of every setting; where the
results go on disk. The last tests start `python app.py` itself to check where it binds, that it starts
without a network, sweeps what a killed instance left and cleans up on SIGTERM, and parse the README.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageOps

from app_fixtures import (REPO, app_process, app_url, bad_files, free_port, gallery_image, good_files,  # noqa: F401
                          photo)
from conftest import psnr_u8
from denoiser.uploads import NOT_AVAILABLE

METHOD_KEYS = ["default", "impulse", "article", "median3", "adaptive_median", "no_colour_fill"]


@pytest.fixture(scope="module")
def client(app_url):  # noqa: F811 - pytest fixture injection
    return Client(app_url, verbose=False)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def denoise(client: Client, path: str | None, *, method: str = "median3", intensity: float = 0.25, seed: int = 0,
            already_noisy: bool = False, per_channel: bool = False):
    image = handle_file(path) if path is not None else None
    return client.predict(image, method, intensity, seed, already_noisy, per_channel, api_name="/denoise")


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def impulse_share(rgb: np.ndarray) -> float:
    """Share of pixels that are pure black or pure white in every channel."""
    flat = rgb.reshape(rgb.shape[0], rgb.shape[1], -1)[..., :3]
    return float(((flat == 0).all(-1) | (flat == 255).all(-1)).mean())


def test_named_endpoints_are_listed(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/denoise", "/add_noise"}
    assert [p["parameter_name"] for p in endpoints["/denoise"]["parameters"]] == [
        "image", "method", "intensity", "seed", "already_noisy", "per_channel"]


@pytest.mark.parametrize("method", METHOD_KEYS)
def test_denoise_each_method_on_a_gallery_image(client, method):
    noisy, denoised, slider, text, numbers, download = denoise(client, str(gallery_image()), method=method)
    clean = pixels(str(gallery_image()))
    for path in (noisy, denoised, download, *slider):
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "outputs must be lossless PNG"
        assert pixels(path).shape == clean.shape
    assert abs(impulse_share(pixels(noisy)) - 0.25) < 0.12  # 1024 pixels: a loose binomial bound
    assert np.array_equal(pixels(download), pixels(denoised))
    assert np.array_equal(pixels(slider[0]), pixels(noisy)) and np.array_equal(pixels(slider[1]), pixels(denoised))
    assert numbers["method"] == method and numbers["added_noise"] is True
    assert numbers["psnr_denoised"] > numbers["psnr_noisy"] + 3, numbers
    assert numbers["ssim_denoised"] > numbers["ssim_noisy"], numbers
    assert 0 < numbers["model_seconds"] <= numbers["total_seconds"]
    assert "PSNR" in text and f"{numbers['psnr_denoised']:.2f}" in text


def test_the_seed_fixes_the_noise(client):
    first = pixels(denoise(client, str(gallery_image()), seed=7)[0])
    again = pixels(denoise(client, str(gallery_image()), seed=7)[0])
    other = pixels(denoise(client, str(gallery_image()), seed=8)[0])
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_already_noisy_denoises_without_adding_noise(client, tmp_path):
    noisy = client.predict(handle_file(str(gallery_image())), 0.3, 3, api_name="/add_noise")
    out_noisy, denoised, _, text, numbers, _ = denoise(client, noisy, already_noisy=True, intensity=0.9)
    assert np.array_equal(pixels(out_noisy), pixels(noisy)), "an already noisy image must pass through unchanged"
    assert impulse_share(pixels(denoised)) < impulse_share(pixels(noisy)) / 3
    assert numbers["added_noise"] is False and numbers["psnr_noisy"] is None and numbers["psnr_denoised"] is None
    assert "already noisy" in text


@pytest.mark.parametrize("intensity", [0.0, 0.1, 0.5, 0.9])
def test_add_noise_hits_the_requested_share_of_pixels(client, tmp_path, intensity):
    path = str(tmp_path / "photo.png")
    Image.fromarray(photo(100, 80)).save(path)
    noisy = pixels(client.predict(handle_file(path), intensity, 1, api_name="/add_noise"))
    assert noisy.shape == (80, 100, 3)
    assert abs(impulse_share(noisy) - intensity) < 0.03  # 8000 pixels: 5 standard deviations at most


def test_per_channel_noise_hits_colour_values_one_by_one_and_the_default_repairs_them_from_the_others(client, tmp_path):
    from skimage import data

    path = str(tmp_path / "astronaut.png")
    Image.fromarray(data.astronaut()[40:168, 180:340]).save(path)  # a real photo: her face and the flag
    noisy = pixels(client.predict(handle_file(path), 0.3, 0, True, api_name="/add_noise"))
    hit = (noisy == 0) | (noisy == 255)
    assert abs(hit.mean() - 0.3) < 0.02 and hit.all(axis=2).mean() < 0.05  # values hit, rarely whole pixels
    results = {m: denoise(client, path, method=m, intensity=0.3, seed=0, per_channel=True)
               for m in ("default", "no_colour_fill")}
    numbers = {m: r[4] for m, r in results.items()}
    assert numbers["default"]["noise_per_channel"] is True and "30% of colour values hit" in results["default"][3]
    assert np.array_equal(pixels(results["default"][0]), noisy)  # the same seeded noise as /add_noise
    # Measured: 42.0 dB with the colour fill, 35.6 dB without (as in tests/test_colour.py).
    assert numbers["default"]["psnr_denoised"] > numbers["no_colour_fill"]["psnr_denoised"] + 4, numbers


def test_a_client_call_written_before_per_channel_still_works(client):
    """gradio_client fills the inputs a call leaves out with their defaults: whole-pixel noise. (Raw HTTP
    calls must send every input: Gradio refuses five values where six are expected.)"""
    numbers = client.predict(handle_file(str(gallery_image())), "median3", 0.3, 0, False, api_name="/denoise")[4]
    assert numbers["noise_per_channel"] is False and numbers["noise_amount"] == 0.3
    noisy = pixels(client.predict(handle_file(str(gallery_image())), 0.3, 0, api_name="/add_noise"))
    assert np.array_equal(noisy, pixels(denoise(client, str(gallery_image()), intensity=0.3)[0]))


# name -> (mode of the noisy/denoised PNG, (width, height) after EXIF rotation)
EXPECTED = {
    "rgb.png": ("RGB", (48, 40)), "gray.png": ("L", (48, 40)), "gray16.png": ("L", (48, 40)),
    "rgba.png": ("RGBA", (48, 40)), "gray_alpha.png": ("LA", (48, 40)), "palette.png": ("RGB", (48, 40)),
    "palette_transparent.png": ("RGBA", (48, 40)), "bilevel.png": ("L", (48, 40)), "photo.jpg": ("RGB", (48, 40)),
    "cmyk.jpg": ("RGB", (48, 40)), "rotated_exif.jpg": ("RGB", (40, 48)), "lossless.webp": ("RGB", (48, 40)),
    "image.bmp": ("RGB", (48, 40)), "image.tiff": ("RGB", (48, 40)), "rgb16.tiff": ("RGB", (48, 40)),
    "image.gif": ("RGB", (48, 40)), "animated.gif": ("RGB", (48, 40)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_kind_of_upload_keeps_its_colours_alpha_and_orientation(client, tmp_path, name):
    path = write(tmp_path, name, good_files()[name])
    mode, size = EXPECTED[name]
    # intensity 0: the "noisy" output is the decoded upload itself, comparable with Pillow's own decoding
    noisy, denoised, _, text, numbers, download = denoise(client, path, intensity=0.0)
    with Image.open(noisy) as shown, Image.open(download) as saved:
        assert (shown.mode, shown.size) == (mode, size)
        assert (saved.mode, saved.size) == (mode, size)
    with Image.open(path) as source:
        source = ImageOps.exif_transpose(source)
        expected = source.convert(mode) if source.mode not in ("I;16", "I") else None
    if expected is not None:
        assert np.abs(pixels(noisy).astype(int) - np.asarray(expected).astype(int)).max() <= 1
    else:  # 16-bit: the display is the 8-bit rounding of the 16-bit values
        assert np.abs(pixels(noisy).astype(int) - np.asarray(Image.open(path)).astype(int) // 257).max() <= 1
    if "A" in mode:  # alpha passes through the denoiser untouched
        assert np.array_equal(pixels(denoised)[..., -1], pixels(noisy)[..., -1])
    assert numbers["channels"] == (1 if mode in ("L", "LA") else 3)
    assert ("first frame" in text) == (name == "animated.gif")


def test_alpha_is_not_noised(client, tmp_path):
    path = write(tmp_path, "rgba.png", good_files()["rgba.png"])
    noisy = pixels(denoise(client, path, intensity=0.5)[0])
    with Image.open(path) as source:
        assert np.array_equal(noisy[..., 3], np.asarray(source)[..., 3])
    assert impulse_share(noisy) > 0.35


BAD = bad_files()


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_upload_gets_a_clear_error(client, tmp_path, name):
    data, message = BAD[name]
    with pytest.raises(AppError) as err:
        denoise(client, write(tmp_path, name, data))
    assert message in str(err.value)
    assert "Traceback" not in str(err.value)


@pytest.mark.parametrize("name", ["notes.png", "truncated.png", "one_pixel.png"])
def test_add_noise_refuses_bad_uploads_too(client, tmp_path, name):
    data, message = BAD[name]
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(write(tmp_path, name, data)), 0.2, 0, api_name="/add_noise")


@pytest.mark.parametrize("options, message", [
    ({"path": None}, "No image given"),
    ({"method": "wiener"}, "Unknown method 'wiener'"),
    ({"intensity": 0.95}, "between 0 and 0.9"),
    ({"intensity": -0.1}, "between 0 and 0.9"),
    ({"seed": -1}, "whole number"),
    ({"seed": 2.5}, "whole number"),
    ({"seed": 10**400}, "whole number"),
])
def test_bad_settings_get_a_clear_error(client, options, message):
    call = {"path": str(gallery_image()), **options}
    with pytest.raises(AppError, match=message):
        denoise(client, call.pop("path"), **call)


def test_a_file_above_max_file_size_is_refused_before_upload(client, tmp_path):
    import app

    limit_mb = int(app.MAX_FILE_SIZE.removesuffix("mb"))
    path = write(tmp_path, "huge.bmp", b"BM" + bytes(limit_mb * 1024 * 1024 + 1))
    with pytest.raises(Exception, match="(?i)file size|too large|exceeds"):
        denoise(client, path)


def test_the_app_still_works_after_all_bad_inputs(client):
    _, denoised, *_ = denoise(client, str(gallery_image()))
    assert pixels(denoised).shape == (32, 32, 3)


@pytest.mark.slow
@pytest.mark.timeout(300)  # a whole app process starts: over a minute on a loaded 2-core machine
def test_python_app_py_binds_where_told_needs_no_network_and_cleans_up(tmp_path):
    import app

    # What `kill -9` leaves: an instance folder with a free lock and cached files, an hour old.
    leftover = tmp_path / f"{app.INSTANCE_PREFIX}999999-killed"
    (leftover / "0123abcd").mkdir(parents=True)
    (leftover / "0123abcd" / "upload.png").write_bytes(b"x" * 4096)
    (leftover / app.LOCK_NAME).touch()
    os.utime(leftover, (time.time() - 3600,) * 2)
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "PYTHONUNBUFFERED": "1",
           "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(tmp_path)}
    env.pop("GRADIO_ANALYTICS_ENABLED", None)  # the app must set it itself
    # launch() prints its share hint last, after its own start-up requests, which httpx logs
    with app_process("app.py", env=env, ready="share=True") as (proc, lines):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
        assert not leftover.exists(), "the folder of a killed instance is swept at start"
        (instance,) = tmp_path.glob(f"{app.INSTANCE_PREFIX}{proc.pid}-*")
        Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            handle_file(str(gallery_image())), "median3", 0.2, 0, False, api_name="/denoise")
        assert len([p for p in instance.rglob("*.png")]) > 100, "gallery copies, the upload and the results"
    output = "".join(lines)
    assert f"Running on local URL:  http://127.0.0.1:{port}" in output
    requests = [line for line in lines if "HTTP Request:" in line]
    assert requests and all(f"//127.0.0.1:{port}/" in line for line in requests), requests
    assert "unavailable" not in output, output
    assert not instance.exists(), "SIGTERM removes the instance's folder and its Gradio cache"


def test_readme_is_a_valid_space_card():
    from huggingface_hub import SpaceCard

    import gradio

    card = SpaceCard.load(REPO / "README.md")
    data = card.data
    assert data.sdk == "gradio" and data.app_file == "app.py"
    assert data.sdk_version == gradio.__version__
    assert data.title and data.emoji and data.license and data.short_description
    assert len(data.short_description) <= 60
    assert data.python_version.startswith("3.")
    assert "docs/screenshot.png" in card.text and "python app.py" in card.text


# ---------------------------------------------------------------------------------------------------------
# Raw HTTP, as curl would send it: the queue's call route and the file route.

def raw_call(url: str, api: str, data: list) -> tuple[str, object]:
    """POST /gradio_api/call/<api>, then read its event stream; returns (event, decoded data)."""
    body = json.dumps({"data": data}).encode()
    request = urllib.request.Request(f"{url}gradio_api/call/{api}", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        event_id = json.load(response)["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event_id}", timeout=120) as response:
        text = response.read().decode()
    event = next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: "))
    payload = next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("data: "))
    return event, json.loads(payload)


def raw_error(url: str, api: str, data: list) -> object:
    event, payload = raw_call(url, api, data)
    assert event == "error", f"expected a refusal, got {event}: {str(payload)[:300]}"
    return payload["error"] if isinstance(payload, dict) else payload


@pytest.fixture
def attack_paths(tmp_path):
    """Paths a caller could name: server files outside the upload folders, reached in every way we know."""
    import app

    secret = tmp_path / "secret.png"  # a real image, readable by the server, that no one uploaded
    Image.fromarray(photo(40, 30)).save(secret)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    link = app.INSTANCE_DIR / f"link-{tmp_path.name}.png"  # a symlink planted inside the upload folder
    link.symlink_to(secret)
    yield {
        "absolute image": str(secret), "not an image": str(tmp_path / "notes.txt"),
        "empty": str(tmp_path / "empty.png"), "missing": str(tmp_path / "missing.png"), "folder": str(tmp_path),
        "dot-dot from the gallery": f"{app.GALLERY_DIR}/../../docs/screenshot.png",
        "relative dot-dot": "assets/gallery/../../app.py", "repository file": str(REPO / "docs" / "screenshot.png"),
        "symlink inside the upload folder": str(link), "system file": "/etc/hostname",
        "dot-dot out of the upload folder": f"{app.INSTANCE_DIR}/../{secret.parent.name}/secret.png",
    }
    link.unlink()


@pytest.mark.parametrize("with_meta", [False, True], ids=["no-meta", "meta"])
@pytest.mark.parametrize("api", ["add_noise", "denoise"])
def test_raw_http_cannot_read_server_files(app_url, attack_paths, api, with_meta, caplog):  # noqa: F811
    answers = {}
    with caplog.at_level(logging.WARNING):
        for what, path in attack_paths.items():
            image = {"path": path, **({"meta": {"_type": "gradio.FileData"}} if with_meta else {})}
            data = [image, 0.0, 0, False] if api == "add_noise" else [image, "median3", 0.0, 0, False, False]
            answers[what] = raw_error(app_url, api, data)
    # One answer for every path: nothing tells a caller whether a path exists or what it holds.
    assert len(set(map(str, answers.values()))) == 1, answers
    if not with_meta:  # with `meta`, Gradio's own upload-folder check refuses first, with no text at all
        assert set(answers.values()) == {NOT_AVAILABLE}
        refused = [r for r in caplog.records if r.name == "denoiser.uploads" and r.levelno == logging.WARNING]
        assert len(refused) >= len(attack_paths) - 1, "refused attempts are logged at WARNING"


def test_raw_http_plain_string_paths_are_refused_too(app_url, attack_paths):  # noqa: F811
    # Gradio's payload validation refuses a bare string before the handler runs, alike for every path.
    answers = {str(raw_error(app_url, "add_noise", [path, 0.0, 0, False])) for path in attack_paths.values()}
    assert len(answers) == 1, answers


def test_raw_http_may_name_a_shipped_gallery_image(app_url):  # noqa: F811
    event, payload = raw_call(app_url, "add_noise", [{"path": str(gallery_image())}, 0.0, 0, False])
    assert event == "complete"
    assert np.array_equal(pixels(payload[0]["path"]), pixels(str(gallery_image())))


@pytest.mark.parametrize("target", ["secret", "app.py", "/etc/passwd", "dot-dot"])
def test_the_file_route_serves_no_server_files(app_url, attack_paths, target):  # noqa: F811
    path = {"secret": attack_paths["absolute image"], "app.py": str(REPO / "app.py"), "/etc/passwd": "/etc/passwd",
            "dot-dot": attack_paths["dot-dot from the gallery"]}[target]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{app_url}gradio_api/file={path}", timeout=10)
    assert err.value.code in (403, 404)


# ---------------------------------------------------------------------------------------------------------
# Strict settings: each loose value is refused with its own message, never taken for something else.

GALLERY_PAYLOAD = {"path": str(REPO / "assets" / "gallery" / "cat_0101.png")}


@pytest.mark.parametrize("value", ["false", "no", "true", 1, 0, [], {}])
def test_already_noisy_must_be_a_real_boolean(app_url, value):  # noqa: F811
    message = raw_error(app_url, "denoise", [GALLERY_PAYLOAD, "median3", 0.2, 0, value, False])
    assert "already_noisy must be true or false" in message


@pytest.mark.parametrize("value", ["true", 1, []])
def test_per_channel_must_be_a_real_boolean(app_url, value):  # noqa: F811
    message = raw_error(app_url, "denoise", [GALLERY_PAYLOAD, "median3", 0.2, 0, False, value])
    assert "per_channel must be true or false" in message
    message = raw_error(app_url, "add_noise", [GALLERY_PAYLOAD, 0.2, 0, value])
    assert "per_channel must be true or false" in message


@pytest.mark.parametrize("value", [["default"], {"key": "default"}, 3, None])
def test_a_method_that_is_not_a_name_gets_a_clear_error_and_no_server_traceback(app_url, value, caplog):  # noqa: F811
    with caplog.at_level(logging.WARNING):
        message = raw_error(app_url, "denoise", [GALLERY_PAYLOAD, value, 0.2, 0, False, False])
    assert "The method must be one of 'default'" in message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a bad setting is not a server fault"


def test_minus_zero_intensity_reads_as_zero(app_url):  # noqa: F811
    event, payload = raw_call(app_url, "denoise", [GALLERY_PAYLOAD, "median3", -0.0, 0, False, False])
    assert event == "complete"
    text, numbers = payload[3], payload[4]
    assert "| noisy (0% of pixels hit)" in text and "-0%" not in text
    assert numbers["noise_amount"] == 0.0 and str(numbers["noise_amount"]) == "0.0"


@pytest.mark.parametrize("orig_name, expected", [
    ("café 東京.png", "café-東京-denoised-median3.png"),
    ("../../etc/pässwd.png", "pässwd-denoised-median3.png"),
    ("a\x00b<>:|?*\u202e.png", "a-b-denoised-median3.png"),
    (".hidden.png", "hidden-denoised-median3.png"),
    ("Ω" * 200 + ".png", "Ω" * 40 + "-denoised-median3.png"),  # 80 bytes of UTF-8
])
def test_unicode_names_survive_in_the_download_name_made_safe(app_url, orig_name, expected):  # noqa: F811
    payload = {**GALLERY_PAYLOAD, "orig_name": orig_name}
    event, outputs = raw_call(app_url, "denoise", [payload, "median3", 0.2, 0, False, False])
    assert event == "complete"
    assert Path(outputs[5]["path"]).name == expected


def test_a_unicode_upload_keeps_its_name_through_the_client(client, tmp_path):
    path = tmp_path / "Straße à Zürich.png"
    Image.fromarray(photo(40, 30)).save(path)
    download = denoise(client, str(path))[5]
    assert Path(download).name == "Straße-à-Zürich-denoised-median3.png"


# ---------------------------------------------------------------------------------------------------------
# "Already noisy" honesty, progress, and disk.

def test_already_noisy_says_so_when_few_pixels_look_like_impulses(client, tmp_path):
    path = tmp_path / "clean.jpg"
    Image.fromarray(photo(120, 90)).save(path, quality=90)  # a clean photo: no black or white dots at all
    text, numbers = denoise(client, str(path), already_noisy=True)[3:5]
    assert "Few pixels look like salt-and-pepper noise" in text and "compressed" in text
    noisy = client.predict(handle_file(str(path)), 0.2, 0, api_name="/add_noise")
    assert "Few pixels" not in denoise(client, noisy, already_noisy=True)[3]


def test_a_noisy_jpeg_goes_from_the_default_model_to_its_impulse_unet(client, tmp_path):
    noisy = pixels(client.predict(handle_file(str(_saved_photo(tmp_path))), 0.2, 0, api_name="/add_noise"))
    Image.fromarray(noisy).save(tmp_path / "noisy.jpg", quality=90)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    note = "handed it to its Impulse U-Net"
    default = denoise(client, str(tmp_path / "noisy.jpg"), method="default", already_noisy=True)
    impulse = denoise(client, str(tmp_path / "noisy.jpg"), method="impulse", already_noisy=True)
    assert note in default[3] and note not in impulse[3]
    # The same network ran, and the default model averaged it over eight views of this small image
    # (denoiser.ensemble), which brings it closer to the clean photo.
    assert psnr_u8(pixels(default[1]), photo(120, 90)) > psnr_u8(pixels(impulse[1]), photo(120, 90)) + 0.2
    lossless = denoise(client, str(tmp_path / "noisy.png"), method="default", already_noisy=True)
    assert note not in lossless[3] and "JPEG" not in lossless[3]


def _saved_photo(folder: Path) -> Path:
    path = folder / "clean.png"
    Image.fromarray(photo(120, 90)).save(path)
    return path


def test_a_tiled_image_reports_progress_per_tile(client, tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(photo(1100, 1040)[..., 0]).save(path)  # grayscale above 1024x1024: 4 tiles of the model
    job = client.submit(handle_file(str(path)), "default", 0.2, 0, False, api_name="/denoise")
    seen = set()
    while not job.done():
        for unit in job.status().progress_data or []:
            seen.add((unit.desc, unit.index, unit.length))
        time.sleep(0.02)
    job.result()
    tiles = [s for s in seen if s[0] and "tiles" in s[0]]
    assert tiles, seen
    assert all(length == 4 for _, _, length in tiles) and any("s left" in desc for desc, _, _ in tiles)


def test_each_result_is_written_once_and_handed_to_every_output(app_url, tmp_path):  # noqa: F811
    import app

    path = tmp_path / "photo.png"
    Image.fromarray(photo(64, 48)).save(path)
    before = {p for p in app.INSTANCE_DIR.rglob("*") if p.is_file()}
    raw = Client(app_url, verbose=False, download_files=False)
    noisy, denoised, slider, _, _, download = raw.predict(handle_file(str(path)), "median3", 0.3, 5, False,
                                                          api_name="/denoise")
    created = {p for p in app.INSTANCE_DIR.rglob("*") if p.is_file()} - before
    assert noisy["path"] == slider[0]["path"] and denoised["path"] == slider[1]["path"] == download["path"]
    assert {Path(noisy["path"]), Path(denoised["path"])} <= created
    assert len(created) == 3, f"the upload and two PNGs, nothing copied twice: {sorted(map(str, created))}"


def test_the_cache_sweep_keeps_the_gallery_and_drops_old_results(client, tmp_path):
    import app

    first = denoise(client, str(gallery_image()))
    folders = {p for p in app.INSTANCE_DIR.iterdir() if p.name.startswith("result-")}
    assert folders
    app.sweep_cache(now=time.time() + app.CACHE_MAX_AGE_S + 1)
    assert not any(p.exists() for p in folders)
    assert all((app.INSTANCE_DIR / name).exists() for name in app.STARTUP_ENTRIES), "gallery copies stay"
    assert Path(first[1]).exists(), "the client's own downloads are not the server's cache"
    denoise(client, str(gallery_image()))  # the app works on after a sweep


def test_dead_instances_are_swept_and_live_ones_kept(tmp_path):
    import app

    dead, young, alive = (tmp_path / f"{app.INSTANCE_PREFIX}{n}" for n in ("1-dead", "2-young", "3-alive"))
    for folder in (dead, young, alive):
        (folder / "cafebabe").mkdir(parents=True)
        (folder / "cafebabe" / "upload.png").write_bytes(b"x" * 1000)
        (folder / app.LOCK_NAME).touch()
    for folder in (dead, alive):
        os.utime(folder, (time.time() - 3600,) * 2)
    holder = app._lock(alive / app.LOCK_NAME, blocking=True)  # an instance that is still running
    try:
        assert app.sweep_dead_instances(tmp_path) == [dead]
    finally:
        holder.close()
    assert not dead.exists() and young.exists() and alive.exists()


def test_the_app_s_methods_share_their_common_networks(client):
    import app

    default, plain, impulse = (app.DENOISERS[k] for k in ("default", "no_colour_fill", "impulse"))
    assert plain.exact.core is default.exact.core and impulse.core is default.moved.core
