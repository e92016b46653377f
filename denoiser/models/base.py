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
    fresh_on_init: ClassVar[tuple[str, ...]] = ()  # name prefixes of tensors `--init-from` never copies

    def parameter_count(self, *, trained_only: bool = False) -> int:
        """All parameters, or only those that train (a model may freeze some of its parts)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trained_only)


def pad_to_multiple(x: torch.Tensor, multiple: int, *, mode: str = "replicate") -> torch.Tensor:
    """(..., H, W) padded at the bottom and right to multiples of `multiple`. "reflect" falls back to
    "replicate" on images too small for it (a reflection needs the pad to be shorter than the side)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if mode == "reflect" and (pad_h >= h or pad_w >= w):
        mode = "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def unshuffled_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(pixel_unshuffle(x, 2))`: (B, C, H, W) -> (B, out, H/2, W/2), for a stride-1 `conv` with odd kernel k
    and padding k // 2.

    While `torch.onnx.export` traces it, the same map is written as one convolution on `x` itself: kernel 2k,
    stride 2, padding 2 * (k // 2), whose tap (2u + dy, 2v + dx) on channel c is `conv`'s tap (u, v) on the
    unshuffled channel 4c + 2dy + dx. Exact (the padding of one unshuffled cell is two pixels), and ONNX
    Runtime then skips the unshuffle's 6-D transpose: 4% of the default model's time at 512x512.
    """
    if not torch.jit.is_tracing():
        return conv(F.pixel_unshuffle(x, 2))
    # The module's own ints: while tracing, weight.shape would be traced values.
    out, c, k = conv.out_channels, conv.in_channels // 4, conv.kernel_size[0]
    assert conv.stride == (1, 1) and conv.padding == (k // 2, k // 2) and k % 2, "a 'same' stride-1 convolution"
    # (out, 4c, k, k) -> (out, c, dy, dx, u, v) -> (out, c, u, dy, v, dx) -> (out, c, 2k, 2k)
    kernel = conv.weight.reshape(out, c, 2, 2, k, k).permute(0, 1, 4, 2, 5, 3).reshape(out, c, 2 * k, 2 * k)
    return F.conv2d(x, kernel, conv.bias, stride=2, padding=2 * (k // 2))


def inside_counts(x: torch.Tensor, *, reach: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """How many of the `reach` positions before and after each position along `dim` of (N, C, H, W) `x` (-1: along
    rows, -2: along columns) lie inside the image, as float tensors shaped (1, 1, 1, W) or (1, 1, H, 1).

    What a window sum over a map of ones gives, in closed form: a few operations on one row or column instead of
    passes over the whole image. `torch.arange` on the traced size keeps the exported graph's sizes dynamic.
    """
    size = x.shape[dim]
    position = torch.arange(size, device=x.device).to(x.dtype)
    shape = (1, 1, 1, -1) if dim == -1 else (1, 1, -1, 1)  # (W,) -> (1, 1, 1, W); (H,) -> (1, 1, H, 1)
    return position.clamp(max=reach).reshape(shape), (size - 1 - position).clamp(max=reach).reshape(shape)
