"""What every denoising network in this package shares: an architecture name, a config dataclass, a size.

The on-disk format (config.json with the format version, safetensors weights, a model card) is written
and read in one place, `denoiser.checkpoint`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn


class DenoisingModel(nn.Module):
    """Maps noisy images (B, C, H, W) in [0, 1] to estimates of the clean images, same shape."""

    architecture: ClassVar[str]  # the key of denoiser.architectures.ARCHITECTURES
    config: Any  # the architecture's config dataclass

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
