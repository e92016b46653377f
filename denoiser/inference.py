"""The public inference API: `load_denoiser(source).denoise(image)`.

`load_denoiser()` with no argument loads the shipped default checkpoint (the switching U-Net in
`checkpoints/default`); `source` may be any checkpoint folder or a Hugging Face Hub repo id.
`.denoise(image)` takes a numpy image, float32 in [0, 1] or uint8, shaped (H, W) or (H, W, 3), and returns
the denoised image with the same shape and dtype. `.denoise_batch(images)` does the same for a float
tensor batch (B, C, H, W) on any device; the benchmark and the app use it. How each architecture runs
(tiling, the article's 32x32 tiles) is in `denoiser.runners`; on the CPU the network itself runs on ONNX
Runtime when it can (`backend`, `denoiser.onnx_backend`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from denoiser.architectures import wrap_model
from denoiser.checkpoint import COLOUR_FOLDER, MOVED_FOLDER, WEIGHTS_FILE, is_checkpoint, load_model, resolve_source
from denoiser.interface import Denoiser, select_device
from denoiser.runners import ByChannels, ByImpulses

# A clone keeps the shipped weights at the repository root, where train.py publishes and the app loads them;
# `pip install .` copies them into the package (pyproject.toml maps checkpoints/ to denoiser/checkpoints/).
_PACKAGE = Path(__file__).resolve().parent
CHECKPOINTS = _PACKAGE / "checkpoints" if (_PACKAGE / "checkpoints").is_dir() else _PACKAGE.parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINTS / "default"
ARTICLE_CHECKPOINT = CHECKPOINTS / "article"
IMPULSE_CHECKPOINT = DEFAULT_CHECKPOINT / MOVED_FOLDER  # the Impulse U-Net: the default model's moved-impulse model
# The default model runs its `moved/` model on the mean of up to eight flipped and transposed views of an image, as
# far as `denoiser.ensemble`'s pixel budget allows (all eight up to about 0.15 megapixels, one above 0.625): on
# the validation photos' noisy JPEGs 0.8-1.1 dB better than one view (README, Photos). The Impulse U-Net loaded
# on its own keeps one view, as it was trained and as the benchmarks compare it.
MOVED_VIEWS = 8

log = logging.getLogger(__name__)


BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
ONNX_BACKENDS = ("onnx", "onnx-int8")  # CPU only; a ValueError when ONNX Runtime cannot be used


# What `load_denoiser(shared=...)` keeps per network: its model, the core the runner calls, and the backend.
Networks = dict[tuple, tuple[Any, Any, str]]


def load_denoiser(source: str | Path | None = None, *, device: str | torch.device | None = None,
                  backend: str = "auto", moved: bool = True, shared: Networks | None = None,
                  **options) -> Denoiser:
    """Load a denoiser: the shipped default when `source` is None, else a checkpoint folder or Hub repo id.

    `device`: None picks CUDA when present, else the CPU (under `backend="onnx"`: the CPU).
    `backend`: how the network runs; padding, tiling and colour handling are the same for all three.

    * "auto": as "onnx-int8" on the CPU when onnxruntime is installed and the model exports, PyTorch
      otherwise (with a log line saying why) and on GPUs.
    * "torch": PyTorch.
    * "onnx": ONNX Runtime on the CPU, in float32 (the same outputs as PyTorch, within 1e-4); a
      ValueError when it cannot be used (a GPU device, onnxruntime missing, a model that does not export).
    * "onnx-int8": as "onnx", but a checkpoint that ships `model.int8.onnx` runs that graph, its U-Net's
      deeper encoder in int8 (`denoiser.quantize`: 1.10-1.31x faster than float ONNX Runtime on a 2-core
      AVX-512 CPU, no cell of the quality tables more than 0.03 dB from float; README, Speed). Images read
      as clean or lightly hit (`denoiser.sparse`) run the float graph, and the other networks run in float.

    The ONNX graph is the checkpoint's `model.onnx` when it matches the weights, else an export cached in
    `$XDG_CACHE_HOME/denoiser/onnx` (see `denoiser.onnx_backend`). The denoiser's `backend` attribute says
    what its main network runs on: "torch", "onnx" or "onnx-int8". `options` go to the architecture's
    runner (e.g. `tile_size` for the default model). A folder with a `colour/` checkpoint inside gives a
    `denoiser.runners.ByChannels`: colour images go through that network, in one pass, and grayscale ones
    through the folder's own. A folder with a `moved/` checkpoint inside (the default model's: the Impulse
    U-Net) gives a `denoiser.runners.ByImpulses`: images whose impulses moved off exact black and white
    (`denoiser.moved`; a noisy file saved as JPEG, say) go through that model, unless `moved` is False.

    `shared`: a dict, empty at first, that several calls fill and take from, so that denoisers of the same
    checkpoint files (the default model with and without its options, the Impulse U-Net on its own and as the
    default model's `moved/` part) hold one copy of each network and of its ONNX Runtime session. A session's
    memory grows to the largest image it has run: in the app, each copy added 320-510 MB after a 2048x2048
    colour photo (README, Demo).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend in ONNX_BACKENDS and device is None:
        device = "cpu"
    device = select_device(device)
    if backend in ONNX_BACKENDS and device.type != "cpu":
        raise ValueError(f"backend {backend!r} runs on the CPU only, not on {device}; use backend='torch' or 'auto'")
    folder = resolve_source(DEFAULT_CHECKPOINT if source is None else source)

    def runner(where: Path, **defaults) -> Denoiser:
        return _runner(where, device=device, backend=backend, options={**defaults, **options}, shared=shared)

    denoiser = runner(folder)
    if is_checkpoint(folder / COLOUR_FOLDER):
        denoiser = ByChannels(gray=denoiser, colour=runner(folder / COLOUR_FOLDER))
    if moved and is_checkpoint(folder / MOVED_FOLDER):
        denoiser = ByImpulses(exact=denoiser, moved=runner(folder / MOVED_FOLDER, views=MOVED_VIEWS))
    return denoiser


def _runner(folder: Path, *, device: torch.device, backend: str, options: dict,
            shared: Networks | None) -> Denoiser:
    """The checkpoint in `folder` wrapped for inference, on the backend asked for; its network taken from, or
    put into, `shared`."""
    key = None if shared is None else _network_key(folder, device=device, backend=backend)
    if key is not None and key in shared:
        model, core, used = shared[key]
        denoiser = wrap_model(model, **options)
        denoiser.core, denoiser.backend = core, used
        return denoiser
    denoiser = wrap_model(load_model(folder, device=device), **options)
    if backend != "torch" and device.type == "cpu":
        denoiser = _on_onnx(denoiser, folder, required=backend in ONNX_BACKENDS, int8=backend != "onnx")
    if key is not None:
        shared[key] = (denoiser.model, denoiser.core, denoiser.backend)
    return denoiser


def _network_key(folder: Path, *, device: torch.device, backend: str) -> tuple:
    """What `shared` knows a network by: the weights file's identity and version (a checkpoint published again
    under the same path is loaded anew), the device and the backend."""
    weights = (folder / WEIGHTS_FILE).stat()
    return str(folder.resolve()), weights.st_mtime_ns, weights.st_size, str(device), backend


def _on_onnx(denoiser: Denoiser, folder: Path, *, required: bool, int8: bool) -> Denoiser:
    """`denoiser` with its core on ONNX Runtime (its int8 graph when `int8` and the folder has a current one), or
    as it is (PyTorch) when that cannot be, unless required."""
    from denoiser import onnx_backend  # imported here: loading with backend="torch" never touches ONNX

    try:
        denoiser.core = onnx_backend.onnx_core(denoiser, folder, int8=int8)
    except onnx_backend.OnnxUnavailable as err:
        if required:
            raise ValueError(f"ONNX Runtime cannot run {folder}: {err}") from None
        log.warning("%s runs on PyTorch: %s", folder, err)
        return denoiser
    denoiser.backend = "onnx-int8" if denoiser.core.int8 else "onnx"
    return denoiser
