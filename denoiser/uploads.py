"""Reading an uploaded image file safely: where it may lie, how large it may be, and how it becomes pixels.

The web demo (app.py) hands this module the path that a caller sent. `read_upload` then:

1. accepts the path only when it resolves (through symlinks) to a regular file inside one of the folders
   the caller may read: the app's upload cache and the shipped gallery. Every other path gets the same
   message, whether it is missing, a folder, a secret or an image, so a caller learns nothing about the
   server's files; the attempt is logged at WARNING;
2. checks the pixel count from the header alone (Pillow's lazy `Image.open`, plus the PNG and GIF headers
   read by hand), so a decompression bomb is refused before any pixel is decoded;
3. decodes the first frame upright (EXIF orientation applied) into float pixels in [0, 1], grayscale or
   RGB, plus a separate alpha channel when the image has real transparency. 16-bit and floating-point
   images are read at full precision.

Every problem is an `UploadError` (a ValueError) whose text is meant for the person who sent the file.
The size and mode rules follow Pillow's documentation (decompression bomb protection, image modes).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

MIN_SIDE = 2  # a 1-pixel-wide image has no neighbours to denoise from
# The one answer for any path outside the allowed folders (or no longer there): it must not differ by path.
NOT_AVAILABLE = "This image is not available on the server. Please upload it again."
FORMATS = "PNG, JPEG, WebP, BMP, TIFF or GIF"


class UploadError(ValueError):
    """A problem with the file a visitor sent; the message is written for them."""


@dataclass
class LoadedImage:
    pixels: np.ndarray  # float32 (H, W) grayscale or (H, W, 3) colour, in [0, 1]
    alpha: np.ndarray | None  # float32 (H, W) in [0, 1], or None when the image is fully opaque
    name: str  # the original file name's stem, used to name results
    notes: list[str] = field(default_factory=list)  # what the reader did that a user should know
    format: str = ""  # the file's format as Pillow names it ("JPEG", "PNG", ...); "" when unknown


def _inside(path: str, roots: Sequence[str]) -> bool:
    return any(os.path.commonpath([path, root]) == root for root in roots)


def resolve_upload(path: str | os.PathLike, *, roots: Sequence[str | os.PathLike]) -> Path:
    """The real path of an accepted upload: a regular file inside one of `roots`, symlinks resolved.

    Anything else raises UploadError(NOT_AVAILABLE): the same text for every refused path.
    """
    try:
        real = os.path.realpath(os.fspath(path))
    except (TypeError, ValueError, OSError):  # not a path at all, or one with a NUL byte
        real = None
    allowed = [os.path.realpath(os.fspath(root)) for root in roots]
    if real is None or not _inside(real, allowed):
        log.warning("refused a file outside the upload folders: %.300r", path)
        raise UploadError(NOT_AVAILABLE)
    if not os.path.isfile(real):  # an expired upload, or a folder
        log.info("an upload is no longer on the server: %.300r", path)
        raise UploadError(NOT_AVAILABLE)
    return Path(real)


def too_large_message(width: int, height: int, max_pixels: int) -> str:
    return (f"The image is {width}×{height} pixels ({width * height / 1e6:.1f} megapixels); this demo "
            f"accepts up to {max_pixels / 1e6:.1f} megapixels. Please downscale it and try again.")


def _declared_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG or GIF header, read by hand: Pillow refuses zero-size images as unknown."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    return None


def open_image(path: Path, *, max_pixels: int) -> tuple[Image.Image, int]:
    """Decode an accepted file after checking its size from the header alone; returns the upright image
    and its frame count. The file is closed on return."""
    if path.stat().st_size == 0:
        raise UploadError("The file is empty (0 bytes). Please upload an image file.")
    try:
        image = Image.open(path)  # reads the header only
    except Image.DecompressionBombError:
        raise UploadError("The image is far too large: its header claims more than "
                          f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels. This demo accepts up to "
                          f"{max_pixels / 1e6:.1f} megapixels.") from None
    except UnidentifiedImageError:
        declared = _declared_size(path)
        if declared is not None and 0 in declared:
            raise UploadError(f"The image has no pixels: its header says {declared[0]}×{declared[1]}.") from None
        raise UploadError(f"This file is not an image that can be read. Please upload a {FORMATS} image.") from None
    except Exception as err:  # noqa: BLE001 - Pillow signals a malformed header with many exception types
        raise UploadError(f"This file looks like an image but its header is damaged ({err}).") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise UploadError(too_large_message(width, height, max_pixels))
        if width < MIN_SIDE or height < MIN_SIDE:
            raise UploadError(f"The image is {width}×{height} pixels: too small to denoise. It needs at least "
                              f"{MIN_SIDE}×{MIN_SIDE} pixels.")
        try:
            image.load()
            # phone photos store their rotation in EXIF; exif_transpose returns a copy that outlives the file,
            # and that copy is told the file's format, which decode_image reports (a JPEG hint in the demo)
            upright = ImageOps.exif_transpose(image)
            upright.format = image.format
            return upright, getattr(image, "n_frames", 1)
        except Exception as err:  # noqa: BLE001 - truncated or corrupt data surfaces as OSError, SyntaxError...
            raise UploadError(f"The image could not be decoded: the file is truncated or damaged ({err}).") from None


def _float_pixels(image: Image.Image, notes: list[str]) -> np.ndarray:
    """Pixels of a single-band or RGB image as float32 in [0, 1]."""
    if image.mode.startswith("I;16"):
        notes.append("16-bit grayscale was read at full precision; the PNG results are 8-bit.")
        return np.asarray(image, dtype=np.float32) / 65535.0
    if image.mode == "I":  # 16-bit PNGs may open as 32-bit integers holding 16-bit values
        values = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if values.max() <= 65535 else float(2**31 - 1)
        notes.append("High bit-depth grayscale was read at full precision; the PNG results are 8-bit.")
        return (np.clip(values, 0, None) / scale).astype(np.float32)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise UploadError("The floating-point image contains NaN or infinite values.")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            notes.append(f"Floating-point pixels were rescaled from [{low:.3g}, {high:.3g}] to [0, 1].")
            values = (values - low) / max(high - low, 1e-12)
        return values.astype(np.float32)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    # One pass from uint8 to float32: a 4-megapixel colour image makes one 48 MB array, no temporaries.
    return np.divide(np.asarray(image), np.float32(255), dtype=np.float32)


def decode_image(image: Image.Image, *, name: str, frames: int = 1) -> LoadedImage:
    """Split a decoded Pillow image into colour/gray pixels and alpha; colour stays colour."""
    notes: list[str] = []
    file_format = image.format or ""  # converted copies below no longer know it
    if frames > 1:
        notes.append("Only the first frame of this multi-frame image is used.")
    mode = image.mode
    if mode == "1":
        image = image.convert("L")
    elif mode == "P":  # palette: its transparency, if any, becomes a real alpha channel
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("PA", "RGBa", "La") or (mode not in ("L", "LA", "RGB", "RGBA", "F", "I")
                                          and not mode.startswith("I;16")):
        image = image.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
    alpha = None
    if image.mode in ("LA", "RGBA"):
        band = np.asarray(image.getchannel("A"))
        if band.min() < 255:  # a fully opaque alpha carries nothing worth keeping
            alpha = np.divide(band, np.float32(255), dtype=np.float32)
            notes.append("Transparency was kept: the noise and the denoising touch only the colours.")
        image = image.convert("L" if image.mode == "LA" else "RGB")
    return LoadedImage(pixels=_float_pixels(image, notes), alpha=alpha, name=name, notes=notes, format=file_format)


def read_upload(path: str | os.PathLike, *, roots: Sequence[str | os.PathLike], max_pixels: int,
                name: str | None = None) -> LoadedImage:
    """Check where `path` lies, then its header, then decode it; `name` is the visitor's file name stem."""
    real = resolve_upload(path, roots=roots)
    image, frames = open_image(real, max_pixels=max_pixels)
    return decode_image(image, name=name or real.stem, frames=frames)
