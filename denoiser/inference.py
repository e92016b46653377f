"""The public inference API: `load_denoiser(source).denoise(image)`.

`load_denoiser()` with no argument loads the shipped default checkpoint (the switching U-Net in
`checkpoints/default`); `source` may be any checkpoint folder or a Hugging Face Hub repo id.
`.denoise(image)` takes a numpy image, float32 in [0, 1] or uint8, shaped (H, W) or (H, W, 3), and returns
the denoised image with the same shape and dtype. `.denoise_batch(images)` does the same for a float
tensor batch (B, C, H, W) on any device; the benchmark and the app use it. How each architecture runs
(tiling, the article's 32x32 tiles) is in `denoiser.runners`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from denoiser.architectures import wrap_model
from denoiser.checkpoint import load_model
from denoiser.interface import Denoiser, select_device

# A clone keeps the shipped weights at the repository root, where train.py publishes and the app loads them;
# `pip install .` copies them into the package (pyproject.toml maps checkpoints/ to denoiser/checkpoints/).
_PACKAGE = Path(__file__).resolve().parent
CHECKPOINTS = _PACKAGE / "checkpoints" if (_PACKAGE / "checkpoints").is_dir() else _PACKAGE.parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINTS / "default"
ARTICLE_CHECKPOINT = CHECKPOINTS / "article"


BACKENDS = ("auto", "torch", "onnx")


def load_denoiser(source: str | Path | None = None, *, device: str | torch.device | None = None,
                  backend: str = "auto", **options) -> Denoiser:
    """Load a denoiser: the shipped default when `source` is None, else a checkpoint folder or Hub repo id.

    `device`: None picks CUDA when present, else the CPU. `options` go to the architecture's runner
    (e.g. `tile_size` for the default model).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    source = DEFAULT_CHECKPOINT if source is None else source
    model = load_model(source, device=select_device(device))
    return wrap_model(model, **options)
