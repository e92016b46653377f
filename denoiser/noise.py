"""Salt-and-pepper (impulse) noise, vectorized over batches on any device.

Two corruption rules live here:

* `salt_and_pepper` is the textbook model: each pixel is corrupted with probability `amount`, and a
  corrupted pixel becomes 1 (salt) with probability `salt_share`, else 0 (pepper).
* `article_noise` is the rule of the Paperspace "Denoising Autoencoders" article, vectorized but
  otherwise bit-for-bit the same decision: `r = round(u, 1)` with `u ~ U[0, 1)`; the pixel becomes 1
  when `r > 1 - intensity` and 0 when `r == 1 - intensity`.

How the article's `intensity` maps to `amount`: `round(u, 1)` takes the value k/10 with probability
0.1 for k = 1..9 and 0.05 for k = 0 and k = 10. For an intensity i that is a multiple of 0.1 with
0 < i < 1, salt = i - 0.05 and pepper = 0.1, so amount = i + 0.05 and salt_share = (i - 0.05) / (i + 0.05).
At the article's 0.2 that is 15% salt + 10% pepper = 25% of pixels. The equality test is done in float64
exactly as Python does it, so the article's quirks survive: `1 - 0.7 != 0.3` in floating point, so at
intensity 0.7 the article makes no pepper at all, and intensity 0 still makes 5% pepper.

For colour images the default is per-pixel impulses (all channels of a pixel turn white or black
together): that is what "salt and pepper" looks like — white and black dots — and it keeps `amount`
meaning "fraction of pixels" for grayscale and colour alike. `per_channel=True` corrupts each channel
independently, which gives coloured dots, the behaviour of e.g. scikit-image's `random_noise`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from denoiser.imaging import _check_array  # the input rules every numpy entry point applies


def _uniform(shape: tuple[int, ...], *, like: torch.Tensor, generator: torch.Generator | None,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # A generator lives on one device; draw there, then move, so a CPU generator works for CUDA images.
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=dtype).to(like.device)


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("images must be a (B, C, H, W) tensor")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got {images.dtype}")


def _per_image(value: float | torch.Tensor, name: str, images: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32, device=images.device)
    if t.ndim > 1 or (t.ndim == 1 and t.numel() != images.shape[0]):
        raise ValueError(f"{name} must be a float or a 1-D tensor with one value per image")
    if not bool(((t >= 0) & (t <= 1)).all()):
        raise ValueError(f"{name} must be in [0, 1]")
    return t.reshape(-1, 1, 1, 1) if t.ndim == 1 else t  # (B,) -> (B, 1, 1, 1)


def salt_and_pepper(images: torch.Tensor, *, amount: float | torch.Tensor, salt_share: float | torch.Tensor = 0.5,
                    per_channel: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupt a fraction `amount` of pixels, a share `salt_share` of them white.

    `amount` and `salt_share` are each one float or one value per image (B,).
    """
    _check_images(images)
    amount = _per_image(amount, "amount", images)
    salt_share = _per_image(salt_share, "salt_share", images)
    b, c, h, w = images.shape
    u = _uniform((b, c if per_channel else 1, h, w), like=images, generator=generator)
    # One uniform draw decides both events: u < amount*share is salt, the rest of u < amount is pepper.
    salt = u < amount * salt_share
    pepper = (u < amount) & ~salt
    out = torch.where(salt, torch.ones_like(images), images)
    return torch.where(pepper, torch.zeros_like(images), out)


def article_noise(images: torch.Tensor, *, intensity: float = 0.2,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The article's rule, one independent draw per element.

    `round(u, 1)` is k/10 for u in [(k - 0.5)/10, (k + 0.5)/10), so the article's two tests reduce to
    intervals of u. Which k pass them is decided here in Python floats, exactly as the article's code
    decides it, so its floating-point quirks carry over; the tensor work is then two comparisons.
    """
    _check_images(images)
    if not 0.0 <= intensity <= 1.0:
        raise ValueError("intensity must be in [0, 1]")
    threshold = 1 - intensity
    salt_from = next((k for k in range(11) if k / 10 > threshold), 11)  # k/10 > threshold is monotone in k
    pepper_k = next((k for k in range(11) if k / 10 == threshold), None)
    u = _uniform(tuple(images.shape), like=images, generator=generator)
    out = torch.where(u >= (salt_from - 0.5) / 10, torch.ones_like(images), images)
    if pepper_k is not None:
        pepper = (u >= (pepper_k - 0.5) / 10) & (u < (pepper_k + 0.5) / 10)
        out = torch.where(pepper, torch.zeros_like(images), out)
    return out


def salt_and_pepper_array(image: np.ndarray, *, amount: float, seed: int, per_channel: bool = False) -> np.ndarray:
    """`salt_and_pepper` for one numpy image (see `denoiser.imaging`), seeded; same shape and dtype back.

    The same values as `salt_and_pepper` on the image's tensor: the draw runs on a grey marker (one channel,
    or one per colour channel with `per_channel`) and only the hit values are written into a copy of the
    image (4x faster on a 4-megapixel colour image than converting the whole image to a tensor and back).
    A grayscale image is hit the same way with or without `per_channel`.
    """
    _check_array(image)
    channels = image.shape[2] if per_channel and image.ndim == 3 else 1
    marker = torch.full((1, channels, *image.shape[:2]), 0.5)  # (1, C, H, W): 1 = salt, 0 = pepper, 0.5 = untouched
    marker = salt_and_pepper(marker, amount=amount, per_channel=True,
                             generator=torch.Generator().manual_seed(seed))[0].numpy()
    # (C, H, W) -> (H, W, C) to index the colour values one by one; (1, H, W) -> (H, W) to index whole pixels.
    marker = marker.transpose(1, 2, 0) if channels > 1 else marker[0]
    out = image.copy()
    out[marker == 1.0] = 255 if image.dtype == np.uint8 else 1.0
    out[marker == 0.0] = 0
    return out


def impulse_mask(images: torch.Tensor) -> torch.Tensor:
    """Pixels that may be impulses: exactly black or exactly white."""
    return (images <= 0.0) | (images >= 1.0)


def _uniform_between(lo: float, hi: float, n: int, *, like: torch.Tensor,
                     generator: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * _uniform((n,), like=like, generator=generator)


@dataclass
class NoiseRecipe:
    """How training draws noise for a batch of clean images."""

    rule: str = "range"  # "range": salt_and_pepper with per-image amounts; "article": the article's rule
    intensity: float = 0.2  # the article rule's intensity (rule="article")
    amount_min: float = 0.0  # per-image amount ~ U[amount_min, amount_max] (rule="range")
    amount_max: float = 0.9
    # A share of images can instead take its amount from a narrower "focus" range, to spend more of the
    # training on the amounts a model finds hardest (rule="range"; 0 keeps the plain uniform draw).
    focus_share: float = 0.0  # share of images drawn from the focus range instead of [amount_min, amount_max]
    focus_min: float = 0.4  # focus range: where the default model's margin over its targets is thinnest
    focus_max: float = 0.85
    salt_share_min: float = 0.5  # per-image salt share ~ U[min, max]; 0.5/0.5 is plain half-and-half
    salt_share_max: float = 0.5
    per_channel: bool = False  # colour only: independent impulses per channel
    # Colour only: a share of images gets per-channel impulses and the rest per-pixel ones, so one model
    # learns both (0 keeps `per_channel` for every image and the noise stream of recipes without it).
    per_channel_share: float = 0.0
    clean_share: float = 0.0  # share of images left without noise, so a model learns to leave clean ones alone

    def __post_init__(self) -> None:
        if self.rule not in ("range", "article"):
            raise ValueError(f"noise rule must be 'range' or 'article', got {self.rule!r}")
        if not 0.0 <= self.amount_min <= self.amount_max <= 1.0:
            raise ValueError("need 0 <= amount_min <= amount_max <= 1")
        if not 0.0 <= self.focus_min <= self.focus_max <= 1.0:
            raise ValueError("need 0 <= focus_min <= focus_max <= 1")
        if not 0.0 <= self.focus_share <= 1.0:
            raise ValueError("focus_share must be in [0, 1]")
        if not 0.0 <= self.salt_share_min <= self.salt_share_max <= 1.0:
            raise ValueError("need 0 <= salt_share_min <= salt_share_max <= 1")
        for name in ("per_channel_share", "clean_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")

    def apply(self, clean: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.rule == "article":
            return article_noise(clean, intensity=self.intensity, generator=generator)
        b = clean.shape[0]
        amount = _uniform_between(self.amount_min, self.amount_max, b, like=clean, generator=generator)
        if self.focus_share > 0:  # drawn only when asked for, so recipes without it keep their noise stream
            focus = _uniform_between(self.focus_min, self.focus_max, b, like=clean, generator=generator)
            amount = torch.where(_uniform((b,), like=clean, generator=generator) < self.focus_share, focus, amount)
        if self.clean_share > 0:  # drawn only when asked for, like the focus range
            amount = torch.where(_uniform((b,), like=clean, generator=generator) < self.clean_share, 0.0, amount)
        share = _uniform_between(self.salt_share_min, self.salt_share_max, b, like=clean, generator=generator)
        noisy = salt_and_pepper(clean, amount=amount, salt_share=share, per_channel=self.per_channel,
                                generator=generator)
        if self.per_channel_share > 0:
            other = salt_and_pepper(clean, amount=amount, salt_share=share, per_channel=not self.per_channel,
                                    generator=generator)
            chosen = _uniform((b,), like=clean, generator=generator) < self.per_channel_share
            noisy = torch.where(chosen.view(-1, 1, 1, 1) != self.per_channel, other, noisy)  # (B,) -> (B, 1, 1, 1)
        return noisy
