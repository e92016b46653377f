"""What happens to a noisy image after the salt and pepper: the steps real noisy files went through.

Impulse noise in the wild rarely reaches a denoiser as exact 0s and 1s. Sensors and scanners give impulses
near, not at, the extremes; people resize their images; and almost every file is a JPEG, which moves a
third to a half of the impulses off 0 and 255 and rings around each one. Training on exact impulses alone
teaches a model a rule ("repaint what is exactly 0 or 1") that all of these break, so `Degradation`
applies them, each to a share of a batch, vectorized where torch allows:

1. near-extreme impulses: each impulse value moves inward by up to `near_extreme_spread`;
2. resizing: a bilinear, antialiased down- and up-scale of both the noisy and the clean image, so the
   target is the clean image as it would look after the same resize;
3. JPEG: the noisy uint8 image saved and read back by Pillow at a random quality (torchvision's
   `encode_jpeg` would do the same on batches, but is deprecated since torchvision 0.29), and the clean
   image too, at the same quality. The target is then the file as it would be without the impulses: a
   denoiser is to remove the impulses and the ringing they caused, not the compression of the whole file,
   so the pixels far from any impulse stay what they are and may pass through unchanged. That is what a
   detector must learn. A network that rewrites every value anyway (the Impulse U-Net's refiner) can also
   undo the compression, and is scored against the original, so `jpeg_target="original"` keeps the clean
   image itself as its target.

Every step takes and returns float images in [0, 1], (B, C, H, W), and draws from the given generator.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from denoiser.imaging import from_uint8, to_uint8


def _draw(n: int, *, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    source = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=source).to(device)


def move_off_extremes(noisy: torch.Tensor, clean: torch.Tensor, *, spread: float, chosen: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """In the `chosen` images (B,) bool, every impulse (a value the noise set to 0 or 1) moves inward by
    U[0, spread]: salt lands in [1 - spread, 1], pepper in [0, spread]."""
    impulse = (noisy != clean) & ((noisy <= 0) | (noisy >= 1)) & chosen.view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
    shift = spread * _draw(noisy.numel(), generator=generator, device=noisy.device).view_as(noisy)
    moved = torch.where(noisy >= 1, 1 - shift, shift)
    return torch.where(impulse, moved, noisy)


def resize_round_trip(images: torch.Tensor, *, scale: float) -> torch.Tensor:
    """Down- (or up-) scale by `scale` and back to the same size, bilinear and antialiased, as an editor would."""
    h, w = images.shape[-2:]
    small = F.interpolate(images, size=(max(2, round(h * scale)), max(2, round(w * scale))), mode="bilinear",
                          antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def jpeg_round_trip(images: torch.Tensor, *, qualities: list[int]) -> torch.Tensor:
    """Each image (C, H, W), C = 1 or 3, saved as a JPEG at its own quality and read back (Pillow, on the CPU)."""
    if len(qualities) != len(images):
        raise ValueError("jpeg_round_trip needs one quality per image")
    u8 = to_uint8(images).cpu().permute(0, 2, 3, 1).numpy()  # (B, C, H, W) -> (B, H, W, C)
    decoded = []
    for pixels, quality in zip(u8, qualities):
        buffer = io.BytesIO()
        Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(buffer, "JPEG", quality=quality)
        decoded.append(np.asarray(Image.open(buffer)).reshape(pixels.shape))  # gray comes back (H, W) -> (H, W, 1)
    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    return from_uint8(out).to(images.device)


@dataclass
class Degradation:
    """The shares of a training batch that get each real-world step after the noise (0 turns a step off)."""

    near_extreme_share: float = 0.2  # images whose impulses are moved off the extremes
    near_extreme_spread: float = 15 / 255  # how far: "impulse values within about 15/255 of the extremes"
    resize_share: float = 0.1  # images resized down and up again (noisy and clean alike)
    resize_min: float = 0.5  # the scale is drawn from [resize_min, resize_max]
    resize_max: float = 0.9
    jpeg_share: float = 0.25  # noisy images saved as JPEG and read back
    jpeg_min: int = 50  # quality drawn uniformly from [jpeg_min, jpeg_max]
    jpeg_max: int = 95
    jpeg_target: str = "file"  # "file": the clean image through the same JPEG; "original": the clean image

    def __post_init__(self) -> None:
        if self.jpeg_target not in ("file", "original"):
            raise ValueError(f"jpeg_target must be 'file' or 'original', got {self.jpeg_target!r}")
        for name in ("near_extreme_share", "resize_share", "jpeg_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if not 0.0 < self.resize_min <= self.resize_max:
            raise ValueError("need 0 < resize_min <= resize_max")
        if not 1 <= self.jpeg_min <= self.jpeg_max <= 100:
            raise ValueError("need 1 <= jpeg_min <= jpeg_max <= 100")

    def apply(self, noisy: torch.Tensor, clean: torch.Tensor, *,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(noisy, clean) -> (degraded noisy, matching clean target), same shapes; the inputs are not changed."""
        noisy, clean = noisy.clone(), clean.clone()
        b, device = noisy.shape[0], noisy.device
        if self.near_extreme_share > 0:
            chosen = _draw(b, generator=generator, device=device) < self.near_extreme_share
            noisy = move_off_extremes(noisy, clean, spread=self.near_extreme_spread, chosen=chosen,
                                      generator=generator)
        if self.resize_share > 0:
            chosen = (_draw(b, generator=generator, device=device) < self.resize_share).tolist()
            scales = (self.resize_min + (self.resize_max - self.resize_min)
                      * _draw(b, generator=generator, device=device)).tolist()
            for i in (i for i in range(b) if chosen[i]):
                noisy[i:i + 1] = resize_round_trip(noisy[i:i + 1], scale=scales[i])
                clean[i:i + 1] = resize_round_trip(clean[i:i + 1], scale=scales[i])
        if self.jpeg_share > 0:
            chosen = (_draw(b, generator=generator, device=device) < self.jpeg_share).nonzero().flatten()
            if len(chosen):
                span = self.jpeg_max - self.jpeg_min + 1
                qualities = (self.jpeg_min + (_draw(len(chosen), generator=generator, device=device) * span)
                             .long().clamp_max(span - 1)).tolist()
                noisy[chosen] = jpeg_round_trip(noisy[chosen], qualities=qualities)
                if self.jpeg_target == "file":
                    clean[chosen] = jpeg_round_trip(clean[chosen], qualities=qualities)
        return noisy, clean
