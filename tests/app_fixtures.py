"""Shared pieces of the app tests: the app launched in-process on a free port, and real image files.

Kept out of conftest.py (owned by the package tests) and imported by tests/test_app_api.py and
tests/test_app_browser.py. Every file written here is a genuine file in its format, made by Pillow or
tifffile, or a deliberately broken one built byte by byte.
"""

from __future__ import annotations

import io
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app_process(*python_args: str, env: dict[str, str], ready: str,
                timeout: float = 180) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    """`python <python_args>` in the repository (e.g. "app.py"), started and waited for until a line of its
    output contains `ready`; yields the process and its output lines (still filling), and stops it with
    SIGTERM at the end, as a process manager would."""
    proc = subprocess.Popen([sys.executable, *python_args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while not any(ready in line for line in lines):
            assert proc.poll() is None, "".join(lines[-60:])
            assert time.monotonic() < deadline, f"{' '.join(python_args)} did not start within {timeout:.0f} s"
            time.sleep(0.2)
        yield proc, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=10)


@pytest.fixture(scope="module")
def app_url():
    """The demo, launched in this process on 127.0.0.1 with its real launch options; yields its URL."""
    import app

    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                                quiet=True, **app.LAUNCH_OPTIONS)
    yield url
    app.demo.close()


def gallery_image() -> Path:
    paths = sorted((REPO / "assets" / "gallery").glob("*.png"))
    assert paths, "assets/gallery is empty: run scripts/make_gallery.py"
    return paths[0]


def photo(width: int, height: int, *, seed: int = 0) -> np.ndarray:
    """A smooth colour test picture (gradients plus a disc), uint8 (H, W, 3): denoisers can recover it."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((x - width * 0.6) ** 2 + (y - height * 0.4) ** 2) < (min(width, height) * 0.25) ** 2
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, size=3).astype(np.float32)
    img = np.stack([base[0] + 0.3 * x / width, base[1] + 0.3 * y / height, base[2] + 0.4 * disc], axis=-1)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but which holds no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def exif_rotated_jpeg(width: int, height: int) -> bytes:
    """A JPEG stored width x height with EXIF orientation 6: viewers show it rotated, height x width."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(Image.fromarray(photo(width, height)), "JPEG", quality=95, exif=exif.tobytes())


def tiff16_rgb(width: int, height: int) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, photo(width, height).astype(np.uint16) * 257)
    return buffer.getvalue()


def good_files() -> dict[str, bytes]:
    """One file per supported kind of upload, keyed by a file name that carries its format."""
    rgb = Image.fromarray(photo(48, 40))
    gray16 = Image.fromarray(photo(48, 40)[..., 0].astype(np.uint16) * 257)
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (40, 1))))
    palette_transparent = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette_transparent.info["transparency"] = 0
    return {
        "rgb.png": encoded(rgb, "PNG"),
        "gray.png": encoded(rgb.convert("L"), "PNG"),
        "gray16.png": encoded(gray16, "PNG"),
        "rgba.png": encoded(rgba, "PNG"),
        "gray_alpha.png": encoded(rgba.convert("LA"), "PNG"),
        "palette.png": encoded(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG"),
        "palette_transparent.png": encoded(palette_transparent, "PNG", transparency=0),
        "bilevel.png": encoded(rgb.convert("1"), "PNG"),
        "photo.jpg": encoded(rgb, "JPEG", quality=90),
        "cmyk.jpg": encoded(rgb.convert("CMYK"), "JPEG", quality=90),
        "rotated_exif.jpg": exif_rotated_jpeg(48, 40),
        "lossless.webp": encoded(rgb, "WEBP", lossless=True),
        "image.bmp": encoded(rgb, "BMP"),
        "image.tiff": encoded(rgb, "TIFF"),
        "rgb16.tiff": tiff16_rgb(48, 40),
        "image.gif": encoded(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32), "GIF"),
        "animated.gif": encoded(rgb.convert("P"), "GIF", save_all=True, append_images=[rgb.rotate(90).convert("P")]),
    }


def bad_files() -> dict[str, tuple[bytes, str]]:
    """Broken or unacceptable uploads: file name -> (bytes, text the user must see)."""
    big_png = encoded(Image.new("L", (2100, 2100)), "PNG")  # 4.4 megapixels, a few kB on disk
    jpeg = encoded(Image.fromarray(photo(256, 256)), "JPEG", quality=95)
    png = encoded(Image.fromarray(photo(256, 256)), "PNG")
    return {
        "notes.png": (b"this is plain text, not an image\n" * 20, "not an image"),
        "empty.png": (b"", "empty"),
        "random.jpg": (np.random.default_rng(0).bytes(4096), "not an image"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated or damaged"),
        "truncated.png": (png[: len(png) // 2], "truncated or damaged"),
        "too_many_pixels.png": (big_png, "megapixels"),
        "bomb_header.png": (png_header(20000, 20000), "far too large"),
        "zero.png": (png_header(0, 0), "no pixels"),
        "one_pixel.png": (encoded(Image.new("RGB", (1, 1), "red"), "PNG"), "too small"),
        "one_row.png": (encoded(Image.new("RGB", (64, 1), "red"), "PNG"), "too small"),
    }
