"""Salt-and-pepper image denoising: the Paperspace article's autoencoder reproduced, and a better default.

Public API: `load_denoiser(source=None).denoise(image)` (see `denoiser.inference`), the `Denoiser`
interface (`denoiser.interface`), and the table of methods (`denoiser.methods.METHODS`).

The names below are resolved on first use (PEP 562), so `import denoiser.filters` or `denoiser.noise`
does not pull in checkpoints, models and huggingface_hub.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"ARTICLE_CHECKPOINT": "denoiser.inference", "DEFAULT_CHECKPOINT": "denoiser.inference",
         "load_denoiser": "denoiser.inference", "Denoiser": "denoiser.interface"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'denoiser' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
