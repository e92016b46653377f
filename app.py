"""Gradio demo (and Hugging Face Space): pick or upload an image, add salt-and-pepper noise, remove it.

The demo sits on the `denoiser` package's public API: `load_denoiser(...).denoise(image)` for the trained
models (the default model and the autoencoder of the Paperspace "Denoising Autoencoders" article) and the
classical median filters from `denoiser.filters` as baselines. It reads uploads itself (the image input
hands over a file path, unprocessed) so that every bad file gets a clear message and a huge image is
refused from its header, before any pixel is decoded.

File layout follows Gradio's demo style: settings, image reading, handlers, then layout, then wiring.

Settings, all optional, from the environment:
    DENOISER_MODEL_REPO    Hugging Face Hub repo id (or checkpoint folder) of the default model;
                           unset: checkpoints/default
    DENOISER_ARTICLE_REPO  the same for the article's autoencoder; unset: checkpoints/article
    DENOISER_MAX_PIXELS    largest accepted image, in pixels (default 4,194,304 = 2048 x 2048)
    DENOISER_CONCURRENCY   requests worked on at once (default 2); the rest wait in the queue
    GRADIO_SERVER_NAME / GRADIO_SERVER_PORT   where to listen (Gradio's own; Spaces set 0.0.0.0:7860)
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Set before gradio is imported: without it Gradio contacts its analytics and Hub hosts at start-up.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# ZeroGPU Spaces: the `spaces` package lends a GPU to each decorated call. It must be imported before
# anything initialises CUDA; everywhere else the GPU work runs as a plain call.
try:
    import spaces

    # Seconds of GPU time each request reserves (spaces' default is 60; shorter requests queue sooner). The
    # largest accepted image, 4.2 MP in colour, takes 17 s on 2 CPU cores; on a GPU slice it needs a fraction
    # of that, and 30 s leaves room for ZeroGPU's worker start. Check it against gpu_check.sh's 4 MP rows.
    gpu = spaces.GPU(duration=30)
except ImportError:
    def gpu(fn: Callable) -> Callable:
        return fn

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: E402

from denoiser.filters import AdaptiveMedianDenoiser, MedianDenoiser  # noqa: E402
from denoiser.imaging import array_to_tensor, tensor_to_array  # noqa: E402
from denoiser.inference import ARTICLE_CHECKPOINT, load_denoiser  # noqa: E402
from denoiser.interface import Denoiser, select_device  # noqa: E402
from denoiser.metrics import MAX_PSNR_DB, psnr, ssim  # noqa: E402
from denoiser.noise import salt_and_pepper_array  # noqa: E402

log = logging.getLogger("app")

ROOT = Path(__file__).resolve().parent
GALLERY_DIR = ROOT / "assets" / "gallery"
MAX_PIXELS = int(os.environ.get("DENOISER_MAX_PIXELS", str(2048 * 2048)))
MAX_FILE_SIZE = "32mb"  # fits a 4-megapixel 16-bit RGB TIFF, the biggest common file under MAX_PIXELS
CONCURRENCY = int(os.environ.get("DENOISER_CONCURRENCY", "2"))
QUEUE_SIZE = 64
MIN_SIDE = 2  # a 1-pixel-wide image has no neighbours to denoise from
SSIM_MIN_SIDE = 11  # the SSIM window; smaller images get PSNR only
MAX_AMOUNT = 0.9
DEFAULT_AMOUNT = 0.25  # the article's intensity 0.2 corrupts 25% of pixels
MAX_SEED = 2**32 - 1
RESULTS_DIR = Path(tempfile.mkdtemp(prefix="denoiser-app-"))
atexit.register(shutil.rmtree, RESULTS_DIR, ignore_errors=True)
RESULTS_MAX_AGE_S = 15 * 60  # Gradio copies each result into its own cache; ours are only a staging area


# ---------------------------------------------------------------------------------------------------------
# Methods: loaded once at start. A missing checkpoint disables that method but not the app.

@dataclass(frozen=True)
class Method:
    key: str  # the value API callers send
    label: str  # what the UI shows
    blurb: str  # one line for the method list under the choice


METHODS = [
    Method("default", "Default model", "a U-Net trained here; it repaints only the black and white "
           "pixels and leaves every other pixel as it is"),
    Method("article", "Article autoencoder", "the article's 6+6-layer autoencoder. It only knows 32×32 "
           "grayscale images: on anything else it runs on each colour channel separately, in 32×32 tiles"),
    Method("median3", "3×3 median", "the classic filter: every pixel becomes the median of its 3×3 "
           "neighbourhood (no learning)"),
    Method("adaptive_median", "Adaptive median", "a median filter that grows its window where noise is "
           "dense and only replaces pixels it judges to be noise (no learning)"),
]
METHOD_BY_KEY = {m.key: m for m in METHODS}


def _model_source(env_var: str, local: Path | None) -> str | Path | None:
    repo_id = os.environ.get(env_var, "").strip()
    return repo_id or local


def load_methods() -> tuple[dict[str, Denoiser], dict[str, str]]:
    """Build every method once; returns the working ones and, per failed one, why it failed."""
    makers: dict[str, Callable[[], Denoiser]] = {
        "default": lambda: load_denoiser(_model_source("DENOISER_MODEL_REPO", None)),
        "article": lambda: load_denoiser(_model_source("DENOISER_ARTICLE_REPO", ARTICLE_CHECKPOINT)),
        "median3": lambda: MedianDenoiser(size=3, device=select_device()),
        "adaptive_median": lambda: AdaptiveMedianDenoiser(device=select_device()),
    }
    ready, failed = {}, {}
    for key, make in makers.items():
        try:
            ready[key] = make()
        except Exception as err:  # noqa: BLE001 - any load failure must leave the other methods usable
            failed[key] = f"{type(err).__name__}: {err}"
            log.warning("method %r is unavailable: %s", key, failed[key])
    return ready, failed


DENOISERS, UNAVAILABLE = load_methods()


class InputError(gr.Error):
    """A problem with what the visitor sent: shown to them as a toast, not logged as a server fault."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_exception=False)


# ---------------------------------------------------------------------------------------------------------
# Reading an upload: header check first, then decode into float pixels in [0, 1] plus optional alpha.

@dataclass
class LoadedImage:
    pixels: np.ndarray  # float32 (H, W) grayscale or (H, W, 3) colour, in [0, 1]
    alpha: np.ndarray | None  # float32 (H, W) in [0, 1], or None when the image is fully opaque
    name: str  # file stem, used to name the download
    notes: list[str]  # what the reader did that a user should know (16-bit, rotated, rescaled...)


def _too_large_message(width: int, height: int) -> str:
    return (f"The image is {width}×{height} pixels ({width * height / 1e6:.1f} megapixels); this demo "
            f"accepts up to {MAX_PIXELS / 1e6:.1f} megapixels. Please downscale it and try again.")


def _declared_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG or GIF header, read by hand: Pillow refuses zero-size images as unknown."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    return None


def open_upload(path: str | Path) -> tuple[Image.Image, int]:
    """Decode `path` after checking its size from the header alone; returns the upright image and its
    frame count. The file is closed on return. Every failure is an InputError with a readable message."""
    path = Path(path)
    if not path.is_file():
        raise InputError("The uploaded file could not be found on the server. Please upload it again.")
    if path.stat().st_size == 0:
        raise InputError("The file is empty (0 bytes). Please upload an image file.")
    try:
        image = Image.open(path)  # reads the header only
    except Image.DecompressionBombError:
        raise InputError("The image is far too large: its header claims more than "
                         f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels. This demo accepts up to "
                         f"{MAX_PIXELS / 1e6:.1f} megapixels.") from None
    except UnidentifiedImageError:
        declared = _declared_size(path)
        if declared is not None and 0 in declared:
            raise InputError(f"The image has no pixels: its header says {declared[0]}×{declared[1]}.") from None
        raise InputError("This file is not an image that can be read. Please upload a PNG, JPEG, WebP, "
                         "BMP, TIFF or GIF image.") from None
    except Exception as err:  # noqa: BLE001 - Pillow signals a malformed header with many exception types
        raise InputError(f"This file looks like an image but its header is damaged ({err}).") from None
    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise InputError(_too_large_message(width, height))
        if width < MIN_SIDE or height < MIN_SIDE:
            raise InputError(f"The image is {width}×{height} pixels: too small to denoise. It needs at least "
                             f"{MIN_SIDE}×{MIN_SIDE} pixels.")
        try:
            image.load()
            # phone photos store their rotation in EXIF; exif_transpose returns a copy that outlives the file
            return ImageOps.exif_transpose(image), getattr(image, "n_frames", 1)
        except Exception as err:  # noqa: BLE001 - truncated or corrupt data surfaces as OSError, SyntaxError...
            raise InputError(f"The image could not be decoded: the file is truncated or damaged ({err}).") from None


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
            raise InputError("The floating-point image contains NaN or infinite values.")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            notes.append(f"Floating-point pixels were rescaled from [{low:.3g}, {high:.3g}] to [0, 1].")
            values = (values - low) / max(high - low, 1e-12)
        return values.astype(np.float32)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.float32) / 255.0


def decode_image(image: Image.Image, *, name: str, frames: int = 1) -> LoadedImage:
    """Split a decoded Pillow image into colour/gray pixels and alpha; colour stays colour."""
    notes: list[str] = []
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
        band = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
        if band.min() < 1.0:  # a fully opaque alpha carries nothing worth keeping
            alpha = band
            notes.append("Transparency was kept: the noise and the denoising touch only the colours.")
        image = image.convert("L" if image.mode == "LA" else "RGB")
    return LoadedImage(pixels=_float_pixels(image, notes), alpha=alpha, name=name, notes=notes)


def read_upload(path: str | Path, *, name: str | None = None) -> LoadedImage:
    image, frames = open_upload(path)
    return decode_image(image, name=name or Path(path).stem, frames=frames)


def _upload_path(payload: Any) -> tuple[str, str | None]:
    """The file path (and original name) of an image input; events run with preprocess=False."""
    if payload is None or payload == "":
        raise InputError("No image given. Pick one from the gallery or upload your own.")
    if isinstance(payload, (str, Path)):
        return str(payload), None
    if isinstance(payload, dict) and payload.get("path"):
        orig = payload.get("orig_name")
        return payload["path"], Path(orig).stem if orig else None
    raise InputError("The image input could not be read. Please upload the image again.")


# ---------------------------------------------------------------------------------------------------------
# Pure steps: noise, denoise, measure, save.

@gpu
def run_method(key: str, pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """Denoise with the chosen method; returns the result and the seconds the method itself took."""
    start = time.perf_counter()
    out = DENOISERS[key].denoise(pixels)
    return out, time.perf_counter() - start


def quality(clean: np.ndarray, noisy: np.ndarray, denoised: np.ndarray) -> tuple[float | None, ...]:
    """PSNR (dB) and SSIM of the noisy and the denoised image against the clean one, in one batch.

    Returns (psnr_noisy, ssim_noisy, psnr_denoised, ssim_denoised); SSIM is None below 11×11 pixels.
    """
    batch = torch.stack([array_to_tensor(noisy), array_to_tensor(denoised)])  # 2 x (C, H, W) -> (2, C, H, W)
    reference = array_to_tensor(clean).unsqueeze(0).expand_as(batch)  # (C, H, W) -> (2, C, H, W)
    p = psnr(batch, reference).tolist()
    s = ssim(batch, reference).tolist() if min(clean.shape[:2]) >= SSIM_MIN_SIDE else [None, None]
    return p[0], s[0], p[1], s[1]


def warm_up() -> None:
    """Pay one-time costs at start, not in the first visitor's request: SSIM's first call imports
    torchmetrics (and with it torchvision), which takes seconds."""
    clean = np.full((SSIM_MIN_SIDE, SSIM_MIN_SIDE, 3), 0.5, dtype=np.float32)
    noisy = salt_and_pepper_array(clean, amount=0.5, seed=0)
    quality(clean, noisy, clean)


def to_pil(pixels: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """Float pixels (+ alpha) in [0, 1] -> an 8-bit L, LA, RGB or RGBA image."""
    u8 = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if alpha is None:
        return Image.fromarray(u8)
    a8 = (np.clip(alpha, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    bands = [u8] if u8.ndim == 2 else [u8[..., i] for i in range(3)]
    return Image.merge("LA" if u8.ndim == 2 else "RGBA", [Image.fromarray(b) for b in bands + [a8]])


def new_result_folder() -> Path:
    """A fresh staging folder for one request's PNGs; folders older than RESULTS_MAX_AGE_S are swept."""
    now = time.time()
    for old in RESULTS_DIR.iterdir():
        try:
            expired = now - old.stat().st_mtime > RESULTS_MAX_AGE_S
        except FileNotFoundError:  # a concurrent request swept it first
            continue
        if expired:
            shutil.rmtree(old, ignore_errors=True)
    folder = RESULTS_DIR / uuid.uuid4().hex  # one folder per request keeps readable file names unique
    folder.mkdir()
    return folder


def save_png(image: Image.Image, path: Path) -> str:
    # PNG is lossless at every level; level 1 encodes about 3x faster than the default 6 and the files of
    # noisy images are barely larger (noise does not compress).
    image.save(path, format="PNG", compress_level=1)
    return str(path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:60] or "image"


# ---------------------------------------------------------------------------------------------------------
# Handlers. Inputs arrive raw (preprocess=False), so each one is checked here.

def _user_errors(fn: Callable) -> Callable:
    """Turn any unexpected failure into a short message; the traceback goes to the server log only."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:  # a visitor must never see a stack trace
            log.exception("request failed")
            raise gr.Error(f"Something went wrong while processing this image ({type(err).__name__}). "
                           "Please try another image or method.", print_exception=False) from None
    return wrapper


def _amount(value: Any) -> float:
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise InputError(f"The noise intensity must be a number, got {value!r}.") from None
    if not 0.0 <= amount <= MAX_AMOUNT:
        raise InputError(f"The noise intensity must be between 0 and {MAX_AMOUNT}, got {amount}.")
    return amount


def _seed(value: Any) -> int:
    if value is None or value == "":
        return 0
    try:
        seed = float(value)
    except (TypeError, ValueError):
        raise InputError(f"The seed must be a whole number, got {value!r}.") from None
    if not seed.is_integer() or not 0 <= seed <= MAX_SEED:
        raise InputError(f"The seed must be a whole number from 0 to {MAX_SEED}, got {value!r}.")
    return int(seed)


def _method(value: Any) -> Method:
    method = METHOD_BY_KEY.get(value) or next((m for m in METHODS if m.label == value), None)
    if method is None:
        keys = ", ".join(repr(m.key) for m in METHODS)
        raise InputError(f"Unknown method {value!r}. Choose one of {keys}.")
    if method.key not in DENOISERS:
        raise InputError(f"The method '{method.label}' is not available on this server: "
                       f"{UNAVAILABLE.get(method.key, 'not loaded')}.")
    return method


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def summary_markdown(numbers: dict[str, Any], notes: list[str]) -> str:
    """The human-readable result: what ran, how long it took, and how close it got to the clean image."""
    kind = "colour" if numbers["channels"] == 3 else "grayscale"
    lines = [(f"**{numbers['method_label']}** took **{numbers['model_seconds'] * 1000:.0f} ms** "
              f"(whole request {numbers['total_seconds'] * 1000:.0f} ms, on {numbers['device'].upper()}) "
              f"for this {numbers['width']}×{numbers['height']} {kind} image.")]
    if numbers["added_noise"]:
        identical = " (identical)" if numbers["psnr_denoised"] >= MAX_PSNR_DB else ""
        lines += ["",
                  "| compared with the clean image | PSNR in dB (higher is better) | SSIM (1 = identical) |",
                  "|---|---|---|",
                  (f"| noisy ({numbers['noise_amount']:.0%} of pixels hit) | {_fmt(numbers['psnr_noisy'], 2)} "
                   f"| {_fmt(numbers['ssim_noisy'], 3)} |"),
                  (f"| denoised | {_fmt(numbers['psnr_denoised'], 2)}{identical} "
                   f"| {_fmt(numbers['ssim_denoised'], 3)} |")]
        if numbers["ssim_denoised"] is None:
            notes = notes + [f"SSIM needs at least {SSIM_MIN_SIDE}×{SSIM_MIN_SIDE} pixels, so only PSNR is shown."]
    else:
        lines += ["", ("Your image was already noisy, so there is no clean original to score against: "
                       "judge the result by eye.")]
    lines += [f"\n_{note}_" for note in notes]
    return "\n".join(lines)


@_user_errors
def denoise_image(image: Any, method: Any, intensity: Any, seed: Any, already_noisy: Any):
    """Add seeded salt-and-pepper noise (unless the image is already noisy), denoise, score, save."""
    start = time.perf_counter()
    path, orig_stem = _upload_path(image)
    chosen, amount, seed, already_noisy = _method(method), _amount(intensity), _seed(seed), bool(already_noisy)
    loaded = read_upload(path, name=orig_stem)
    noisy = loaded.pixels if already_noisy else salt_and_pepper_array(loaded.pixels, amount=amount, seed=seed)
    denoised, model_seconds = run_method(chosen.key, noisy)
    scores = (None,) * 4 if already_noisy else quality(loaded.pixels, noisy, denoised)
    # Each PNG is encoded once and handed to every output as a file, rather than as pixels that each
    # output component would encode again.
    folder, stem = new_result_folder(), _slug(loaded.name)
    noisy_png = save_png(to_pil(noisy, loaded.alpha), folder / f"{stem}-noisy.png")
    denoised_png = save_png(to_pil(denoised, loaded.alpha), folder / f"{stem}-denoised-{chosen.key}.png")
    if chosen.key == "article" and (loaded.pixels.ndim == 3 or loaded.pixels.shape != (32, 32)):
        loaded.notes.append("The article autoencoder only knows 32×32 grayscale: this image went through it "
                            "channel by channel, in 32×32 tiles.")
    numbers = {
        "method": chosen.key, "method_label": chosen.label, "device": str(DENOISERS[chosen.key].device),
        "width": int(loaded.pixels.shape[1]), "height": int(loaded.pixels.shape[0]),
        "channels": 1 if loaded.pixels.ndim == 2 else 3, "has_alpha": loaded.alpha is not None,
        "added_noise": not already_noisy, "noise_amount": 0.0 if already_noisy else amount, "seed": seed,
        **dict(zip(("psnr_noisy", "ssim_noisy", "psnr_denoised", "ssim_denoised"), map(_rounded, scores))),
        "model_seconds": round(model_seconds, 5), "total_seconds": round(time.perf_counter() - start, 5),
    }
    text = summary_markdown(numbers, loaded.notes)
    return noisy_png, denoised_png, (noisy_png, denoised_png), text, numbers, denoised_png


@_user_errors
def noise_only(image: Any, intensity: Any, seed: Any):
    """Just the noise step: the image with seeded salt-and-pepper noise on `intensity` of its pixels."""
    path, orig_stem = _upload_path(image)
    amount, seed = _amount(intensity), _seed(seed)
    loaded = read_upload(path, name=orig_stem)
    noisy = to_pil(salt_and_pepper_array(loaded.pixels, amount=amount, seed=seed), loaded.alpha)
    return save_png(noisy, new_result_folder() / f"{_slug(loaded.name)}-noisy.png")


def gallery_items() -> list[tuple[str, str]]:
    """Shipped CIFAR-10 test images, one class per column: row k holds the k-th image of every class."""
    by_class: dict[str, list[Path]] = {}
    for path in sorted(GALLERY_DIR.glob("*.png")):
        by_class.setdefault(path.stem.rsplit("_", 1)[0], []).append(path)
    rows = max((len(v) for v in by_class.values()), default=0)
    return [(str(paths[i]), cls) for i in range(rows) for cls, paths in by_class.items() if i < len(paths)]


GALLERY = gallery_items()


def pick_from_gallery(evt: gr.SelectData) -> str:
    return GALLERY[evt.index][0]


def toggle_noisy(already_noisy: bool):
    label = "Denoise" if already_noisy else "Add noise, then denoise"
    return gr.Button(value=label), gr.Slider(interactive=not already_noisy), gr.Number(interactive=not already_noisy)


# ---------------------------------------------------------------------------------------------------------
# Layout

CSS = """
/* Small images are shown enlarged: keep every noisy pixel a crisp square instead of a blur. */
#noisy img, #denoised img, #compare img, #gallery img, #input-image img { image-rendering: pixelated; }
/* Gradio shows an image at its natural size when it fits; a 32x32 CIFAR image would be a speck. */
#input-image img, #noisy img, #denoised img { width: 100%; height: 100%; object-fit: contain; }
"""

INTRO = """
# Salt-and-pepper denoiser
Salt-and-pepper noise turns random pixels pure white or pure black, like a scratched photo or a
faulty sensor. **Pick a picture below or upload your own**: the demo sprinkles that noise on it, removes it
again, and shows how close the result gets to the original.
"""

ABOUT = f"""
**Methods.** {' '.join(f'**{m.label}**: {m.blurb}.' for m in METHODS)}

**Scores.** PSNR (peak signal-to-noise ratio, in dB) and SSIM (structural similarity, 1 = identical)
compare the noisy and the denoised image with the clean original, so they appear only when the demo added
the noise itself.

**Limits.** Images up to {MAX_PIXELS / 1e6:.1f} megapixels and {MAX_FILE_SIZE.upper()} in PNG, JPEG,
WebP, BMP, TIFF or GIF; grayscale stays grayscale, colour stays colour, transparency and EXIF rotation are
kept. Results are 8-bit PNG, lossless, at full size. The gallery holds CIFAR-10 test images (32×32).

**API.** Every button is also an API endpoint (`/denoise`, `/add_noise`): see "Use via API" at the bottom
of the page.
"""

unavailable_note = "".join(f"\n\n⚠️ **{METHOD_BY_KEY[k].label}** is unavailable on this server ({why})."
                           for k, why in UNAVAILABLE.items())
method_choices = [(m.label, m.key) for m in METHODS if m.key in DENOISERS] or [(m.label, m.key) for m in METHODS]

with gr.Blocks(title="Salt-and-pepper denoiser", delete_cache=(3600, 3600)) as demo:
    gr.Markdown(INTRO + unavailable_note)
    gallery = gr.Gallery(value=GALLERY, label="Pick a CIFAR-10 test image (one class per column)", columns=10,
                         height=250, allow_preview=False, object_fit="contain", elem_id="gallery")
    with gr.Row(equal_height=True):
        input_image = gr.Image(label="…or upload your own image (PNG, JPEG, WebP, BMP, TIFF, GIF)",
                               type="filepath", image_mode=None, sources=["upload", "clipboard"], height=340,
                               elem_id="input-image")
        with gr.Column():
            intensity = gr.Slider(0.0, MAX_AMOUNT, value=DEFAULT_AMOUNT, step=0.01, label="Noise intensity",
                                  info="Share of pixels turned white or black: 0.25 = every 4th pixel, half salt, "
                                       "half pepper.", elem_id="intensity")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                                 info="Same seed, same noise.", elem_id="seed")
                already_noisy = gr.Checkbox(value=False, label="My image is already noisy",
                                            info="Denoise only, add no noise.", elem_id="already-noisy")
            method = gr.Radio(method_choices, value=method_choices[0][1], label="Method",
                              info="The article autoencoder only knows 32×32 grayscale: other images go through "
                                   "it channel by channel in 32×32 tiles.", elem_id="method")
            run = gr.Button("Add noise, then denoise", variant="primary", elem_id="run")
    with gr.Row(equal_height=True):
        noisy_out = gr.Image(label="Noisy", format="png", interactive=False, height=340, elem_id="noisy")
        denoised_out = gr.Image(label="Denoised", format="png", interactive=False, height=340, elem_id="denoised")
        compare = gr.ImageSlider(label="Before / after (drag the handle)", format="png", interactive=False,
                                 height=340, elem_id="compare")
    summary = gr.Markdown(elem_id="summary")
    with gr.Row():
        download = gr.File(label="Denoised image, full size (PNG)", interactive=False, elem_id="download")
        with gr.Column():
            with gr.Accordion("Numbers (JSON)", open=False):
                numbers = gr.JSON(label="Measurements", elem_id="numbers")
            with gr.Accordion("About the methods, scores and limits", open=False):
                gr.Markdown(ABOUT)

    # -----------------------------------------------------------------------------------------------------
    # Wiring. preprocess=False: the handlers read the upload themselves, so a bad file gets a clear error.
    denoise_inputs = [input_image, method, intensity, seed, already_noisy]
    denoise_outputs = [noisy_out, denoised_out, compare, summary, numbers, download]
    run.click(denoise_image, denoise_inputs, denoise_outputs, api_name="denoise", preprocess=False)
    gallery.select(pick_from_gallery, None, input_image, api_visibility="private").then(
        denoise_image, denoise_inputs, denoise_outputs, preprocess=False, api_visibility="private")
    already_noisy.change(toggle_noisy, already_noisy, [run, intensity, seed], api_visibility="private")
    # API only: the noise step alone, e.g. to make test images for the "already noisy" path.
    noise_button = gr.Button("Add noise only", visible=False)
    noise_button.click(noise_only, [input_image, intensity, seed], noisy_out, api_name="add_noise", preprocess=False)

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
warm_up()

LAUNCH_OPTIONS = {"max_file_size": MAX_FILE_SIZE, "allowed_paths": [str(GALLERY_DIR)], "css": CSS}

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    # A plain `kill` (SIGTERM, as process managers stop services) becomes a normal exit, so the atexit
    # clean-up of RESULTS_DIR runs as it does after Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    demo.launch(**LAUNCH_OPTIONS)
