"""The demo's API, driven through gradio_client against the app launched in-process (app.py).

Covers each named endpoint, each method, each supported kind of upload and each bad input, with the
text the user gets asserted. The last tests start `python app.py` itself to check where it binds and
that it starts without a network, and parse the README's Space card.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageOps

from app_fixtures import REPO, app_url, bad_files, free_port, gallery_image, good_files, photo  # noqa: F401

METHOD_KEYS = ["default", "article", "median3", "adaptive_median"]


@pytest.fixture(scope="module")
def client(app_url):  # noqa: F811 - pytest fixture injection
    return Client(app_url, verbose=False)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def denoise(client: Client, path: str | None, *, method: str = "median3", intensity: float = 0.25, seed: int = 0,
            already_noisy: bool = False):
    image = handle_file(path) if path is not None else None
    return client.predict(image, method, intensity, seed, already_noisy, api_name="/denoise")


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
        "image", "method", "intensity", "seed", "already_noisy"]


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


def test_python_app_py_binds_where_told_and_needs_no_network():
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "PYTHONUNBUFFERED": "1",
           "HF_HUB_OFFLINE": "1"}
    env.pop("GRADIO_ANALYTICS_ENABLED", None)  # the app must set it itself
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        # launch() prints its share hint last, after its own start-up requests, which httpx logs
        while not any("share=True" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "app.py did not finish starting within 180 s"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=10)
    output = "".join(lines)
    assert f"Running on local URL:  http://127.0.0.1:{port}" in output
    requests = [line for line in lines if "HTTP Request:" in line]
    assert requests and all(f"//127.0.0.1:{port}/" in line for line in requests), requests
    assert "unavailable" not in output, output


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
