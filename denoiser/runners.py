"""Inference wrappers that turn a network into a `Denoiser`: tiling for the U-Net, 32x32 tiles for the article.

* `ModelDenoiser` runs a fully convolutional model (the default U-Net) at any size. Images larger than
  `tile_size` x `tile_size` run in overlapping tiles whose margin covers the network's receptive field, so
  the result matches the untiled one (to float rounding) while memory stays bounded by the tile size.
* `ArticleDenoiser` runs the autoencoder of Paperspace's "Denoising Autoencoders" article, which knows only
  32x32 grayscale images. Anything else is processed per channel in 32x32 tiles (the image is edge-padded
  to a multiple of 32 and cropped back), and each tile is replaced by the model's reconstruction, as in the
  article. Expect blocky, blurry results on photos.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from denoiser.interface import Denoiser, Progress, check_batch
from denoiser.models import ArticleAutoencoder, UNetDenoiser


class ModelDenoiser(Denoiser):
    """A fully convolutional model (the default U-Net), tiled above `tile_size` x `tile_size` pixels."""

    def __init__(self, model: UNetDenoiser, *, name: str = "Default model", tile_size: int = 512) -> None:
        # channels_last: oneDNN's faster convolution layout, ~1.4x at 32x32 on this CPU.
        self.model, self.name = model.eval().to(memory_format=torch.channels_last), name
        self.device = next(model.parameters()).device
        multiple = model.config.multiple
        if tile_size % multiple:
            raise ValueError(f"tile_size must be a multiple of {multiple}")
        self.tile_size = tile_size
        self.margin = math.ceil(model.receptive_radius / multiple) * multiple

    @property
    def peak_tile_pixels(self) -> int:
        """The largest input one model call sees, per channel: what bounds memory on big images."""
        return (self.tile_size + 2 * self.margin) ** 2

    @torch.inference_mode()
    def denoise_batch(self, images: torch.Tensor, *, progress: Progress | None = None) -> torch.Tensor:
        check_batch(images)
        x = images.to(self.device)
        h, w = x.shape[-2:]
        if h * w <= self.tile_size**2:
            out = self.model(x)
            if progress:
                progress(1, 1)
        else:
            out = self._tiled(x, progress=progress)
        return out.clamp(0, 1).to(images.device)

    def _tiled(self, x: torch.Tensor, *, progress: Progress | None) -> torch.Tensor:
        b, c, h, w = x.shape
        m = self.model.config.multiple
        # Pad once, exactly as the untiled model pads, so every tile edge falls on the same grid.
        x = F.pad(x, (0, -w % m, 0, -h % m), mode="replicate")
        out = torch.empty_like(x)
        hp, wp = x.shape[-2:]
        t, g = self.tile_size, self.margin
        total, done = math.ceil(hp / t) * math.ceil(wp / t) * c, 0
        for y0 in range(0, hp, t):
            for x0 in range(0, wp, t):
                y1, x1 = min(y0 + t, hp), min(x0 + t, wp)
                top, left = max(0, y0 - g), max(0, x0 - g)
                for ch in range(c):  # one channel at a time keeps the peak memory per channel
                    tile = x[:, ch:ch + 1, top:min(hp, y1 + g), left:min(wp, x1 + g)]
                    res = self.model(tile)
                    out[:, ch:ch + 1, y0:y1, x0:x1] = res[..., y0 - top:y1 - top, x0 - left:x1 - left]
                    done += 1
                    if progress:
                        progress(done, total)
        return out[..., :h, :w]


class ArticleDenoiser(Denoiser):
    """The article's autoencoder: 32x32 grayscale natively, per-channel 32x32 tiles for anything else."""

    def __init__(self, model: ArticleAutoencoder, *, name: str = "Article autoencoder", batch_size: int = 1024) -> None:
        self.model, self.name, self.batch_size = model.eval(), name, batch_size
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def denoise_batch(self, images: torch.Tensor, *, progress: Progress | None = None) -> torch.Tensor:
        check_batch(images)
        s = self.model.config.image_size
        b, c, h, w = images.shape
        x = images.to(self.device).reshape(b * c, 1, h, w)  # (B, C, H, W) -> (B*C, 1, H, W)
        x = F.pad(x, (0, -w % s, 0, -h % s), mode="replicate")
        hp, wp = x.shape[-2:]
        tiles = F.unfold(x, s, stride=s)  # (B*C, s*s, L): one column per 32x32 tile
        n_tiles = tiles.shape[-1]
        tiles = tiles.transpose(1, 2).reshape(-1, 1, s, s)  # (B*C, s*s, L) -> (B*C*L, 1, s, s)
        chunks = tiles.split(self.batch_size)
        outs = []
        for i, chunk in enumerate(chunks):
            outs.append(self.model(chunk))
            if progress:
                progress(i + 1, len(chunks))
        out = torch.cat(outs)
        out = out.reshape(b * c, n_tiles, s * s).transpose(1, 2)  # (B*C*L, 1, s, s) -> (B*C, s*s, L)
        out = F.fold(out, (hp, wp), s, stride=s)[..., :h, :w]
        return out.reshape(b, c, h, w).clamp(0, 1).to(images.device)  # (B*C, 1, H, W) -> (B, C, H, W)
