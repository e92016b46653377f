"""Gradio demo (and Hugging Face Space): pick or upload an image, add salt-and-pepper noise, remove it.

The demo sits on the `denoiser` package's public API: the methods table (`denoiser.methods.METHODS`: the
trained default model, the autoencoder of the Paperspace "Denoising Autoencoders" article, and classic
median filters as baselines), `Denoiser.denoise(pixels, progress=...)`, and `denoiser.uploads`, which
decides which files a request may read and turns them into pixels. Each result is written once, as a
PNG inside this instance's own Gradio cache folder, and handed to every output as that same file.

File layout follows Gradio's demo style: settings, disk, methods, handlers, then layout, then wiring.

Settings, all optional, from the environment:
    DENOISER_MODEL_REPO    Hugging Face Hub repo id (or checkpoint folder) of the default model;
                           unset: checkpoints/default
    DENOISER_IMPULSE_REPO  the same for the Impulse U-Net; unset: checkpoints/default/moved
    DENOISER_ARTICLE_REPO  the same for the article's autoencoder; unset: checkpoints/article
    DENOISER_BACKEND       auto | torch | onnx | onnx-int8: how the learned models run (default auto)
    DENOISER_MAX_PIXELS    largest accepted image, in pixels (default 4,194,304 = 2048 x 2048)
    DENOISER_CONCURRENCY   requests worked on at once (default: the CPU count); the rest wait in the queue
    DENOISER_MODEL_CONCURRENCY  of those, how many may run a learned model at once (default 1 on the CPU,
                           where one model call already uses every core; 2 on a GPU)
    DENOISER_CACHE_MB      disk kept for uploads and results of this instance (default 1024)
    DENOISER_CACHE_MINUTES how long an upload or result stays downloadable (default 30)
    GRADIO_TEMP_DIR        where this instance makes its folder (default: the system's temporary folder)
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
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# Set before gradio is imported: without it Gradio contacts its analytics and Hub hosts at start-up.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# ZeroGPU Spaces: the `spaces` package lends a GPU to each decorated call. It must be imported before
# anything initialises CUDA; everywhere else the GPU work runs as a plain call.
try:
    import spaces

    # Seconds of GPU time each request asks for (spaces' default is 60), checked against the visitor's
    # remaining ZeroGPU quota before the call runs, so less lets more calls through. The largest accepted
    # image, 4.2 MP in colour, takes 17 s on 2 CPU cores and a fraction of that on a GPU; 30 s leaves room
    # for ZeroGPU's worker start. Check it against gpu_check.sh's 4.2 MP rows.
    gpu = spaces.GPU(duration=30)
except ImportError:
    def gpu(fn: Callable) -> Callable:
        return fn

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from denoiser.imaging import array_view  # noqa: E402
from denoiser.interface import Denoiser, select_device  # noqa: E402
from denoiser.methods import METHODS  # noqa: E402
from denoiser.metrics import MAX_PSNR_DB, psnr_ssim_in_bands  # noqa: E402
from denoiser.moved import NEAR  # noqa: E402
from denoiser.noise import salt_and_pepper_array  # noqa: E402
from denoiser.runners import sends_to_moved  # noqa: E402
from denoiser.uploads import LoadedImage, UploadError, read_upload  # noqa: E402

log = logging.getLogger("app")

ROOT = Path(__file__).resolve().parent
GALLERY_DIR = ROOT / "assets" / "gallery"
MAX_PIXELS = int(os.environ.get("DENOISER_MAX_PIXELS", str(2048 * 2048)))
MAX_FILE_SIZE = "32mb"  # fits a 4-megapixel 16-bit RGB TIFF, the biggest common file under MAX_PIXELS
BACKEND = os.environ.get("DENOISER_BACKEND", "auto").strip() or "auto"
DEVICE = select_device()
CPU_COUNT = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
# Filters use one core each at a time, so as many requests as cores keep the machine busy; a model call
# already spreads over every core, so on the CPU a second one at once only doubles the memory.
CONCURRENCY = int(os.environ.get("DENOISER_CONCURRENCY", str(CPU_COUNT)))
MODEL_CONCURRENCY = int(os.environ.get("DENOISER_MODEL_CONCURRENCY", "1" if DEVICE.type == "cpu" else "2"))
QUEUE_SIZE = 64
CACHE_BYTES = int(float(os.environ.get("DENOISER_CACHE_MB", "1024")) * 2**20)
CACHE_MAX_AGE_S = float(os.environ.get("DENOISER_CACHE_MINUTES", "30")) * 60
CACHE_GRACE_S = 30  # never removed younger: the caller is still fetching the files it was just handed
SSIM_MIN_SIDE = 11  # the SSIM window; smaller images get PSNR only
MAX_AMOUNT = 0.9
DEFAULT_AMOUNT = 0.25  # the article's intensity 0.2 corrupts 25% of pixels
MAX_SEED = 2**32 - 1
NEAR_EXTREME = NEAR  # within this of 0 or 1 a value may be a (compressed) impulse
FEW_IMPULSES = 0.01  # below this share of such values, an "already noisy" image barely has impulse noise
APP_METHODS = ("default", "impulse", "article", "median3", "adaptive_median", "no_colour_fill")
# Where `spaces` really lends GPUs (it reads this variable itself), the decorated call runs in another
# process, so a progress callback cannot cross into it; an installed `spaces` elsewhere changes nothing.
ON_ZERO_GPU = "spaces" in sys.modules and os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


# ---------------------------------------------------------------------------------------------------------
# Disk: one folder per running instance holds Gradio's cache (uploads) and our results, so the instance can
# bound it while running and remove it whole at exit. A lock held for the process's life marks it as alive;
# folders whose lock is free belong to instances that died without cleaning up (kill -9) and are swept.

INSTANCE_PREFIX = "denoiser-app-"
LOCK_NAME = ".alive"


def _lock(path: Path, *, blocking: bool) -> Any:
    """An open file holding an exclusive lock on `path`, or None when another process holds it."""
    import fcntl  # POSIX only; Windows gets no sweep (see sweep_dead_instances)

    handle = open(path, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        return None
    return handle


def sweep_dead_instances(base: Path, *, min_age_s: float = 60.0) -> list[Path]:
    """Remove the folders of instances under `base` that are no longer running; returns what was removed."""
    if os.name != "posix":
        return []
    removed = []
    for folder in base.glob(f"{INSTANCE_PREFIX}*"):
        try:
            if not folder.is_dir() or time.time() - folder.stat().st_mtime < min_age_s:
                continue  # young folders may be an instance that has not taken its lock yet
            handle = _lock(folder / LOCK_NAME, blocking=False)
        except OSError:
            continue
        if handle is None:
            continue  # alive
        shutil.rmtree(folder, ignore_errors=True)
        handle.close()
        removed.append(folder)
    return removed


def start_instance_folder() -> tuple[Path, Any]:
    """This instance's folder, locked, after sweeping dead ones; Gradio's cache is pointed at it."""
    base = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    for folder in sweep_dead_instances(base):
        log.info("removed %s, left by an instance that is no longer running", folder)
    folder = Path(tempfile.mkdtemp(prefix=f"{INSTANCE_PREFIX}{os.getpid()}-", dir=base)).resolve()
    lock = _lock(folder / LOCK_NAME, blocking=True) if os.name == "posix" else None
    os.environ["GRADIO_TEMP_DIR"] = str(folder)  # read by Gradio for every upload and cached output
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder, lock


INSTANCE_DIR, _INSTANCE_LOCK = start_instance_folder()
# What Gradio caches while the page is built (the gallery's images) must outlive every sweep; set below.
STARTUP_ENTRIES: frozenset[str] = frozenset()


def _entry_size(entry: os.DirEntry) -> int:
    if entry.is_file(follow_symlinks=False):
        return entry.stat(follow_symlinks=False).st_size
    total = 0
    for root, _, files in os.walk(entry.path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def sweep_cache(*, now: float | None = None) -> None:
    """Keep this instance's uploads and results within CACHE_MAX_AGE_S and CACHE_BYTES, oldest first."""
    now = time.time() if now is None else now
    entries = []
    for entry in os.scandir(INSTANCE_DIR):
        if entry.name == LOCK_NAME or entry.name in STARTUP_ENTRIES:
            continue
        try:
            entries.append((entry.stat(follow_symlinks=False).st_mtime, _entry_size(entry), entry.path))
        except FileNotFoundError:  # a concurrent request swept it first
            continue
    entries.sort()
    total = sum(size for _, size, _ in entries)
    for mtime, size, path in entries:
        age = now - mtime
        if age < CACHE_GRACE_S or (age < CACHE_MAX_AGE_S and total <= CACHE_BYTES):
            break
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            Path(path).unlink(missing_ok=True)
        total -= size


_last_sweep = 0.0
SWEEP_EVERY_S = 5.0  # a sweep walks every entry: at most this often, not on every one of many small requests


def new_result_folder() -> Path:
    """A fresh folder for one request's PNGs, inside Gradio's cache so that outputs are not copied again."""
    global _last_sweep
    if time.time() - _last_sweep >= SWEEP_EVERY_S:
        _last_sweep = time.time()
        sweep_cache()
    folder = INSTANCE_DIR / f"result-{uuid.uuid4().hex}"  # one per request keeps readable names unique
    folder.mkdir()
    return folder


def keep_upload(path: Path) -> None:
    """Mark an upload as used now, so that a visitor who keeps re-running it does not see it expire."""
    if path.parent != INSTANCE_DIR and path.parent.parent == INSTANCE_DIR:
        os.utime(path.parent)


# ---------------------------------------------------------------------------------------------------------
# Memory: glibc keeps freed memory for reuse, so after one 4-megapixel request a server would hold hundreds of
# MB it no longer uses, and grow further with each worker thread's own heap. Blocks of 16 MB and more (whole
# images, model activations) are mapped and unmapped one by one instead, and what the heaps keep free is
# handed back after each request.

def _glibc() -> Any:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 16 * 2**20)  # M_MMAP_THRESHOLD, fixed (it otherwise grows to 32 MB as blocks are freed)
        return libc
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): leave the allocator as it is
        return None


GLIBC = _glibc()


def release_memory() -> None:
    if GLIBC is not None:
        GLIBC.malloc_trim(0)


# ---------------------------------------------------------------------------------------------------------
# Methods: built once at start from the package's table. A missing checkpoint disables that method only.

def _model_source(key: str) -> str | None:
    env_var = {"default": "DENOISER_MODEL_REPO", "impulse": "DENOISER_IMPULSE_REPO",
               "article": "DENOISER_ARTICLE_REPO"}.get(key)
    return (os.environ.get(env_var, "").strip() or None) if env_var else None


def load_methods() -> tuple[dict[str, Denoiser], dict[str, str]]:
    """Build every method once; returns the working ones and, per failed one, why it failed.

    The methods share the networks they have in common (the default model's U-Net with "no colour fill", its
    Impulse U-Net with "impulse"), so each network's ONNX Runtime session, and the memory it keeps after a
    large image, exists once.
    """
    ready, failed, shared = {}, {}, {}
    for key in APP_METHODS:
        try:
            ready[key] = METHODS[key].build(source=_model_source(key), device=DEVICE, backend=BACKEND,
                                            shared=shared)
        except Exception as err:  # noqa: BLE001 - any load failure must leave the other methods usable
            failed[key] = f"{type(err).__name__}: {err}"
            log.warning("method %r is unavailable: %s", key, failed[key])
    return ready, failed


DENOISERS, UNAVAILABLE = load_methods()
MODEL_SLOTS = threading.BoundedSemaphore(MODEL_CONCURRENCY)
# PNG encoding and scoring run beside the model call; Pillow's encoder and torch both release the GIL.
BACKGROUND = ThreadPoolExecutor(max_workers=2 * CONCURRENCY, thread_name_prefix="beside")


class InputError(gr.Error):
    """A problem with what the visitor sent: shown to them as a toast, not logged as a server fault."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_exception=False)


# ---------------------------------------------------------------------------------------------------------
# Pure steps: noise, denoise, measure, save.

@gpu
def run_method(key: str, pixels: np.ndarray, progress: Callable[[int, int], None] | None = None
               ) -> tuple[np.ndarray, float]:
    """Denoise with the chosen method; returns the result and the seconds the method itself took."""
    start = time.perf_counter()
    out = DENOISERS[key].denoise(pixels, progress=progress)
    return out, time.perf_counter() - start


def quality(clean: np.ndarray, other: np.ndarray) -> tuple[float, float | None]:
    """PSNR (dB) and SSIM of `other` against `clean`; SSIM is None below 11×11 pixels. Bands keep the
    memory of a 4-megapixel image to tens of MB."""
    psnr_db, ssim_value = psnr_ssim_in_bands(array_view(other), array_view(clean))
    return float(psnr_db[0]), (float(ssim_value[0]) if min(clean.shape[:2]) >= SSIM_MIN_SIDE else None)


def impulse_like_share(pixels: np.ndarray) -> float:
    """Share of pixel values at or near pure black or white: what salt-and-pepper noise leaves behind."""
    flat = pixels.reshape(-1)  # (H, W[, 3]) -> (H*W[*3],), a view
    return float(np.count_nonzero((flat <= NEAR_EXTREME) | (flat >= 1 - NEAR_EXTREME)) / flat.size)


def _to_uint8(values: np.ndarray, *, rows: int = 256) -> np.ndarray:
    """Float in [0, 1] -> uint8, rounded; worked in bands of rows, so the float temporary stays small."""
    out = np.empty(values.shape, dtype=np.uint8)
    for top in range(0, values.shape[0], rows):
        scaled = np.multiply(values[top:top + rows], np.float32(255), dtype=np.float32)
        scaled += 0.5
        np.clip(scaled, 0, 255, out=scaled)
        out[top:top + rows] = scaled
    return out


def to_pil(pixels: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """Float pixels (+ alpha) in [0, 1] -> an 8-bit L, LA, RGB or RGBA image."""
    u8 = _to_uint8(pixels)
    if alpha is None:
        return Image.fromarray(u8)
    a8 = _to_uint8(alpha)
    bands = [u8] if u8.ndim == 2 else [u8[..., i] for i in range(3)]
    return Image.merge("LA" if u8.ndim == 2 else "RGBA", [Image.fromarray(b) for b in bands + [a8]])


def save_png(pixels: np.ndarray, alpha: np.ndarray | None, path: Path) -> str:
    # PNG is lossless at every level; level 1 encodes about 3x faster than the default 6 and the files of
    # noisy images are barely larger (noise does not compress).
    to_pil(pixels, alpha).save(path, format="PNG", compress_level=1)
    return str(path)


def safe_stem(text: str) -> str:
    """A file-name stem that keeps letters of every script but no separators, dots at the ends or control
    characters, within 80 bytes of UTF-8 (file systems allow 255 per name)."""
    text = re.sub(r"[^\w.-]+", "-", unicodedata.normalize("NFC", text)).strip(".-_")
    return text.encode("utf-8")[:80].decode("utf-8", "ignore").rstrip(".-_") or "image"


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
        except UploadError as err:
            raise InputError(str(err)) from None
        except Exception as err:  # a visitor must never see a stack trace
            log.exception("request failed")
            raise gr.Error(f"Something went wrong while processing this image ({type(err).__name__}). "
                           "Please try another image or method.", print_exception=False) from None
    return wrapper


def _upload_path(payload: Any) -> tuple[Any, str | None]:
    """The file path (and original name) of an image input; where it may lie is checked by read_upload."""
    if payload is None or payload == "":
        raise InputError("No image given. Pick one from the gallery or upload your own.")
    if isinstance(payload, (str, Path)):
        return payload, None
    if isinstance(payload, dict) and payload.get("path"):
        orig = payload.get("orig_name")
        return payload["path"], (Path(orig).stem if isinstance(orig, str) and orig else None)
    raise InputError("The image input could not be read. Please upload the image again.")


def _load(payload: Any) -> LoadedImage:
    path, orig_stem = _upload_path(payload)
    loaded = read_upload(path, roots=[INSTANCE_DIR, GALLERY_DIR], max_pixels=MAX_PIXELS, name=orig_stem)
    keep_upload(Path(os.path.realpath(path)))
    return loaded


def _amount(value: Any) -> float:
    if isinstance(value, bool):
        raise InputError(f"The noise intensity must be a number, got {value!r}.")
    try:
        amount = float(value) + 0.0  # + 0.0 turns -0.0 into 0.0
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"The noise intensity must be a number, got {value!r:.60}.") from None
    if not 0.0 <= amount <= MAX_AMOUNT:
        raise InputError(f"The noise intensity must be between 0 and {MAX_AMOUNT}, got {amount}.")
    return amount


def _seed(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise InputError(f"The seed must be a whole number, got {value!r}.")
    try:
        seed = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"The seed must be a whole number, got {value!r:.60}.") from None
    if not seed.is_integer() or not 0 <= seed <= MAX_SEED:
        raise InputError(f"The seed must be a whole number from 0 to {MAX_SEED}, got {value!r}.")
    return int(seed)


def _flag(value: Any, name: str) -> bool:
    """A check box: a JSON true or false. A string such as "false" is refused, never taken as true."""
    if value is None:
        return False
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InputError(f"{name} must be true or false, got {value!r:.60} ({type(value).__name__}).")


def _method(value: Any) -> str:
    """The key of the chosen method, given its key or its label."""
    keys = ", ".join(repr(k) for k in APP_METHODS)
    if not isinstance(value, str):
        raise InputError(f"The method must be one of {keys}, got a {type(value).__name__}.")
    key = value if value in APP_METHODS else next((k for k in APP_METHODS if METHODS[k].label == value), None)
    if key is None:
        raise InputError(f"Unknown method {value!r:.60}. Choose one of {keys}.")
    if key not in DENOISERS:
        raise InputError(f"The method '{METHODS[key].label}' is not available on this server: "
                         f"{UNAVAILABLE.get(key, 'not loaded')}.")
    return key


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def summary_markdown(numbers: dict[str, Any], notes: list[str]) -> str:
    """The human-readable result: what ran, how long it took, and how close it got to the clean image."""
    kind = "colour" if numbers["channels"] == 3 else "grayscale"
    lines = [(f"**{METHODS[numbers['method']].label}** took **{numbers['model_seconds'] * 1000:.0f} ms** "
              f"(whole request {numbers['total_seconds'] * 1000:.0f} ms, on {numbers['device'].upper()}) "
              f"for this {numbers['width']}×{numbers['height']} {kind} image.")]
    if numbers["added_noise"]:
        identical = " (identical)" if numbers["psnr_denoised"] >= MAX_PSNR_DB else ""
        hit = "colour values" if numbers["noise_per_channel"] and numbers["channels"] == 3 else "pixels"
        lines += ["",
                  "| compared with the clean image | PSNR in dB (higher is better) | SSIM (1 = identical) |",
                  "|---|---|---|",
                  (f"| noisy ({numbers['noise_amount']:.0%} of {hit} hit) | {_fmt(numbers['psnr_noisy'], 2)} "
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


class TileProgress:
    """Forwards the denoiser's progress(done, total) to Gradio's bar, with the time left estimated from
    the pace so far."""

    def __init__(self, progress: gr.Progress) -> None:
        self.progress, self.start = progress, time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        left = (time.perf_counter() - self.start) / max(done, 1) * (total - done)
        desc = f"Denoising: {done}/{total} tiles, about {left:.0f} s left" if total > 1 else "Denoising"
        self.progress((done, total), desc=desc, unit="tiles")


def _denoise(key: str, pixels: np.ndarray, progress: gr.Progress) -> tuple[np.ndarray, float]:
    """run_method, holding a model slot for the learned methods."""
    if not METHODS[key].learned:
        return run_method(key, pixels, None if ON_ZERO_GPU else TileProgress(progress))
    if not MODEL_SLOTS.acquire(blocking=False):
        progress(0.0, desc="Waiting for the model: another image is being denoised")
        MODEL_SLOTS.acquire()
    try:
        return run_method(key, pixels, None if ON_ZERO_GPU else TileProgress(progress))
    finally:
        MODEL_SLOTS.release()


@_user_errors
def denoise_image(image: Any, method: Any, intensity: Any, seed: Any, already_noisy: Any, per_channel: Any = False,
                  progress: gr.Progress = gr.Progress()):
    """Add seeded salt-and-pepper noise (unless the image is already noisy), denoise, score, save."""
    start = time.perf_counter()
    key, amount, seed = _method(method), _amount(intensity), _seed(seed)
    already_noisy, per_channel = _flag(already_noisy, "already_noisy"), _flag(per_channel, "per_channel")
    progress(0.0, desc="Reading the image")
    loaded = _load(image)
    noisy = loaded.pixels if already_noisy else salt_and_pepper_array(loaded.pixels, amount=amount, seed=seed,
                                                                      per_channel=per_channel)
    folder, stem = new_result_folder(), safe_stem(loaded.name)
    # The noisy image's PNG and scores are worked out beside the model call, the denoised PNG beside its scores.
    noisy_png = BACKGROUND.submit(save_png, noisy, loaded.alpha, folder / f"{stem}-noisy.png")
    noisy_scores = None if already_noisy else BACKGROUND.submit(quality, loaded.pixels, noisy)
    denoised, model_seconds = _denoise(key, noisy, progress)
    denoised_png = BACKGROUND.submit(save_png, denoised, loaded.alpha, folder / f"{stem}-denoised-{key}.png")
    progress(1.0, desc="Scoring and saving")
    if noisy_scores is None:
        scores = (None,) * 4
        share = impulse_like_share(noisy)
        if share < FEW_IMPULSES:
            loaded.notes.append(f"Few pixels look like salt-and-pepper noise: only {share:.1%} of the values are "
                                "black or white (or nearly). The result stays close to the input. If the dots you "
                                "see are grey or coloured, the image may have been compressed (JPEG) or resized "
                                "after the noise was added, which smears the impulses these methods look for."
                                + ("" if key == "impulse" else " The Impulse U-Net is trained for such files: "
                                   "try it."))
        elif sends_to_moved(DENOISERS[key], noisy):
            loaded.notes.append("Many of this image's black and white dots are no longer pure black or white, as "
                                "after JPEG compression or resizing, so the default model handed it to its Impulse "
                                "U-Net, which learned to find such dots, and averaged its answers over up to eight "
                                "mirrored and transposed copies of the image (fewer on large images, to bound the "
                                "wait).")
        elif key in ("default", "no_colour_fill") and loaded.format == "JPEG":  # too few dots moved, or no moved/
            loaded.notes.append("This is a JPEG file: compression moves salt-and-pepper dots off pure black and "
                                "white, and the default model repaints only pure black and white unless many dots "
                                "moved. The Impulse U-Net learned to find the moved dots: try it.")
    else:
        scores = (*noisy_scores.result(), *quality(loaded.pixels, denoised))
    if key == "article" and (loaded.pixels.ndim == 3 or loaded.pixels.shape != (32, 32)):
        loaded.notes.append("The article autoencoder only knows 32×32 grayscale: this image went through it "
                            "channel by channel, in 32×32 tiles.")
    noisy_png, denoised_png = noisy_png.result(), denoised_png.result()
    numbers = {
        "method": key, "device": str(DENOISERS[key].device),
        "width": int(loaded.pixels.shape[1]), "height": int(loaded.pixels.shape[0]),
        "channels": 1 if loaded.pixels.ndim == 2 else 3, "has_alpha": loaded.alpha is not None,
        "added_noise": not already_noisy, "noise_amount": 0.0 if already_noisy else amount, "seed": seed,
        "noise_per_channel": per_channel and not already_noisy,
        **dict(zip(("psnr_noisy", "ssim_noisy", "psnr_denoised", "ssim_denoised"), map(_rounded, scores))),
        "model_seconds": round(model_seconds, 5), "total_seconds": round(time.perf_counter() - start, 5),
    }
    text = summary_markdown(numbers, loaded.notes)
    del loaded, noisy, denoised
    release_memory()
    return noisy_png, denoised_png, (noisy_png, denoised_png), text, numbers, denoised_png


@_user_errors
def noise_only(image: Any, intensity: Any, seed: Any, per_channel: Any = False):
    """Just the noise step: the image with seeded salt-and-pepper noise on `intensity` of its pixels (or of
    its colour values, `per_channel`)."""
    amount, seed, per_channel = _amount(intensity), _seed(seed), _flag(per_channel, "per_channel")
    loaded = _load(image)
    noisy = salt_and_pepper_array(loaded.pixels, amount=amount, seed=seed, per_channel=per_channel)
    path = save_png(noisy, loaded.alpha, new_result_folder() / f"{safe_stem(loaded.name)}-noisy.png")
    del loaded, noisy
    release_memory()
    return path


def gallery_items() -> list[tuple[str, str]]:
    """Shipped CIFAR-10 test images, one class per column: row k holds the k-th image of every class."""
    by_class: dict[str, list[Path]] = {}
    for path in sorted(GALLERY_DIR.glob("*.png")):
        by_class.setdefault(path.stem.rsplit("_", 1)[0], []).append(path)
    rows = max((len(v) for v in by_class.values()), default=0)
    return [(str(paths[i]), cls) for i in range(rows) for cls, paths in by_class.items() if i < len(paths)]


GALLERY = gallery_items()
GALLERY_COLUMNS = len({caption for _, caption in GALLERY}) or 1


def pick_from_gallery(evt: gr.SelectData) -> str:
    return GALLERY[evt.index][0]


def toggle_noisy(already_noisy: bool):
    label = "Denoise" if already_noisy else "Add noise, then denoise"
    adding = not already_noisy
    return (gr.Button(value=label), gr.Slider(interactive=adding), gr.Number(interactive=adding),
            gr.Checkbox(interactive=adding))


def warm_up() -> None:
    """Pay one-time costs at start, not in the first visitor's request (oneDNN's first convolutions)."""
    clean = np.full((SSIM_MIN_SIDE, SSIM_MIN_SIDE, 3), 0.5, dtype=np.float32)
    quality(clean, salt_and_pepper_array(clean, amount=0.5, seed=0))


# ---------------------------------------------------------------------------------------------------------
# Layout

PHONE = "@media (max-width: 640px)"
CSS = f"""
/* Small images are shown enlarged: keep every noisy pixel a crisp square instead of a blur. */
#noisy img, #denoised img, #compare img, #gallery img, #input-image img {{ image-rendering: pixelated; }}
/* Gradio shows an image at its natural size when it fits; a 32x32 CIFAR image would be a speck. */
#input-image img, #noisy img, #denoised img {{ width: 100%; height: 100%; object-fit: contain; }}
/* One class per column at every width, as the label says: Gradio's grid would wrap to fewer columns. */
#gallery .grid-container {{ grid-template-columns: repeat({GALLERY_COLUMNS}, minmax(0, 1fr));
  grid-template-rows: none; grid-auto-rows: auto; gap: 4px; }}
#gallery .thumbnail-item {{ aspect-ratio: 1 / 1; }}
{PHONE} {{
  /* The whole gallery in view (10 rows of 32-pixel images), the run button always at hand. */
  #gallery, #gallery .gallery-container, #gallery .grid-wrap {{ height: auto !important; max-height: none !important;
    overflow: visible; }}
  #gallery .grid-wrap {{ padding: 2px; }}
  #gallery .grid-container {{ gap: 2px; padding-top: 40px; }}  /* clear of the label, which may wrap */
  #gallery .caption-label {{ display: none; }}  /* a caption would hide most of a 32-pixel thumbnail */
  #input-image, #noisy, #denoised, #compare {{ height: 240px !important; }}
  #run {{ position: fixed; left: 12px; right: 12px; bottom: 12px; width: auto; z-index: 100;
          box-shadow: 0 4px 16px rgba(0, 0, 0, 0.35); }}
  .gradio-container {{ padding-bottom: 72px !important; }}
  #intro h1 {{ font-size: 1.5rem; margin-bottom: 0.25rem; }}
}}
"""

# On a phone the result lands below the settings: bring it into view once it is there.
SHOW_RESULT_ON_PHONES = """() => {
  if (window.matchMedia("(max-width: 640px)").matches) {
    document.getElementById("compare")?.scrollIntoView({block: "start", behavior: "smooth"});
  }
}"""

INTRO = """
# Salt-and-pepper denoiser
Salt-and-pepper noise turns random pixels pure white or pure black, like a scratched photo or a
faulty sensor. **Tap a picture below or upload your own**: the demo sprinkles that noise on it, removes it
again, and shows how close the result gets to the original.
"""

ABOUT = f"""
**Methods.** {' '.join(f'**{METHODS[k].label}**: {METHODS[k].blurb}.' for k in APP_METHODS)}

**Scores.** PSNR (peak signal-to-noise ratio, in dB) and SSIM (structural similarity, 1 = identical)
compare the noisy and the denoised image with the clean original, so they appear only when the demo added
the noise itself.

**Limits.** Images up to {MAX_PIXELS / 1e6:.1f} megapixels and {MAX_FILE_SIZE.upper()} in PNG, JPEG,
WebP, BMP, TIFF or GIF; grayscale stays grayscale, colour stays colour, transparency and EXIF rotation are
kept. Results are 8-bit PNG, lossless, at full size, kept for {CACHE_MAX_AGE_S / 60:.0f} minutes. The
gallery holds CIFAR-10 test images (32×32).

**API.** Every button is also an API endpoint (`/denoise`, `/add_noise`): see "Use via API" at the bottom
of the page.
"""

unavailable_note = "".join(f"\n\n⚠️ **{METHODS[k].label}** is unavailable on this server ({why})."
                           for k, why in UNAVAILABLE.items())
method_choices = [(METHODS[k].label, k) for k in APP_METHODS if k in DENOISERS] or \
                 [(METHODS[k].label, k) for k in APP_METHODS]

with gr.Blocks(title="Salt-and-pepper denoiser") as demo:
    gr.Markdown(INTRO + unavailable_note, elem_id="intro")
    gallery = gr.Gallery(value=GALLERY, label="Pick a CIFAR-10 test image: one class per column",
                         columns=GALLERY_COLUMNS, height=250, allow_preview=False, object_fit="contain",
                         elem_id="gallery")
    with gr.Row(equal_height=True):
        input_image = gr.Image(label="…or upload your own image (PNG, JPEG, WebP, BMP, TIFF, GIF)",
                               type="filepath", image_mode=None, sources=["upload", "clipboard"], height=340,
                               elem_id="input-image")
        with gr.Column():
            method = gr.Radio(method_choices, value=method_choices[0][1], label="Method",
                              info="The article autoencoder only knows 32×32 grayscale: other images go through "
                                   "it channel by channel in 32×32 tiles.", elem_id="method")
            intensity = gr.Slider(0.0, MAX_AMOUNT, value=DEFAULT_AMOUNT, step=0.01, label="Noise intensity",
                                  info="Share of pixels turned white or black: 0.25 = every 4th pixel, half salt, "
                                       "half pepper.", elem_id="intensity")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                                 info="Same seed, same noise.", elem_id="seed")
                per_channel = gr.Checkbox(value=False, label="Noise per colour channel",
                                          info="Each channel is hit on its own: coloured dots.",
                                          elem_id="per-channel")
                already_noisy = gr.Checkbox(value=False, label="My image is already noisy",
                                            info="Denoise only, add no noise.", elem_id="already-noisy")
            run = gr.Button("Add noise, then denoise", variant="primary", elem_id="run")
    with gr.Row(equal_height=True):
        compare = gr.ImageSlider(label="Before / after (drag the handle)", format="png", interactive=False,
                                 height=340, elem_id="compare")
        with gr.Column():
            summary = gr.Markdown(elem_id="summary")
            download = gr.File(label="Denoised image, full size (PNG)", interactive=False, elem_id="download")
    with gr.Row(equal_height=True):
        noisy_out = gr.Image(label="Noisy", format="png", interactive=False, height=340, elem_id="noisy")
        denoised_out = gr.Image(label="Denoised", format="png", interactive=False, height=340, elem_id="denoised")
    with gr.Accordion("Numbers (JSON)", open=False):
        numbers = gr.JSON(label="Measurements", elem_id="numbers")
    with gr.Accordion("About the methods, scores and limits", open=False):
        gr.Markdown(ABOUT)

    # -----------------------------------------------------------------------------------------------------
    # Wiring. preprocess=False: the handlers read the upload themselves, so a bad file gets a clear error.
    denoise_inputs = [input_image, method, intensity, seed, already_noisy, per_channel]
    denoise_outputs = [noisy_out, denoised_out, compare, summary, numbers, download]
    run.click(denoise_image, denoise_inputs, denoise_outputs, api_name="denoise", preprocess=False).success(
        None, js=SHOW_RESULT_ON_PHONES)
    gallery.select(pick_from_gallery, None, input_image, api_visibility="private").then(
        denoise_image, denoise_inputs, denoise_outputs, preprocess=False, api_visibility="private").success(
        None, js=SHOW_RESULT_ON_PHONES)
    already_noisy.change(toggle_noisy, already_noisy, [run, intensity, seed, per_channel], api_visibility="private")
    # API only: the noise step alone, e.g. to make test images for the "already noisy" path.
    noise_button = gr.Button("Add noise only", visible=False)
    noise_button.click(noise_only, [input_image, intensity, seed, per_channel], noisy_out, api_name="add_noise",
                       preprocess=False)

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
STARTUP_ENTRIES = frozenset(os.listdir(INSTANCE_DIR))
warm_up()

LAUNCH_OPTIONS = {"max_file_size": MAX_FILE_SIZE, "allowed_paths": [str(GALLERY_DIR)], "css": CSS}

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    # A plain `kill` (SIGTERM, as process managers stop services) becomes a normal exit, so the atexit
    # clean-up of INSTANCE_DIR runs as it does after Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    demo.launch(**LAUNCH_OPTIONS)
