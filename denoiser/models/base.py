"""What every denoising network in this package shares: an architecture name, a config dataclass, a size.

The on-disk format (config.json with the format version, safetensors weights, a model card) is written
and read in one place, `denoiser.checkpoint`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn


class DenoisingModel(nn.Module):
    """Maps noisy images (B, C, H, W) in [0, 1] to estimates of the clean images, same shape."""

    architecture: ClassVar[str]  # the key of denoiser.architectures.ARCHITECTURES
    config: Any  # the architecture's config dataclass
    pad_mode: ClassVar[str] = "replicate"  # how inputs are padded to the model's multiple (`pad_to_multiple`)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def pad_to_multiple(x: torch.Tensor, multiple: int, *, mode: str = "replicate") -> torch.Tensor:
    """(..., H, W) padded at the bottom and right to multiples of `multiple`. "reflect" falls back to
    "replicate" on images too small for it (a reflection needs the pad to be shorter than the side)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if mode == "reflect" and (pad_h >= h or pad_w >= w):
        mode = "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
