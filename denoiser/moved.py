"""Did an image's impulses move off pure black and white? The test that picks the default model's network.

Salt-and-pepper noise sets values to exactly 0 or 1, and the default model's U-Net repaints exactly those
(`denoiser.models.unet`). A file saved as JPEG after the noise, or resized, or noise whose impulses were
never exact (a sensor's hot pixels at 250 instead of 255) breaks that rule: 37-48% of the impulses are no
longer exact after JPEG at quality 95-75, and the network hands the image back about as noisy as it came.
The Impulse U-Net (`denoiser.models.detect_fill`) has a learned detector that finds moved impulses, but its
false alarms on lossless files cost 0.4 dB on CIFAR-10 at amount 0.1, where the exact rule is right by
construction. So the default model's checkpoint folder holds both (`moved/`, see `denoiser.checkpoint`), and
this test sends each whole image to one of them (`denoiser.runners.ByImpulses`).

Why a test on the whole image, not on each pixel: one image is either lossless or not, and thousands of its
values vote, where a single value near black can be a dark pixel or a pepper impulse that JPEG lifted to 9/255.
The vote counts *isolated extremes*: values within `NEAR` of black (white) with at least 5 of their 8
neighbours brighter (darker) than `AWAY` from that extreme, i.e. values far from their 3x3 median, on the
side of an impulse. An isolated extreme that is exactly 0 or 1 is an impulse that stayed put; one that is
not exact has moved. An image goes to the moved-impulse network when its moved isolated extremes are at
least `MIN_SHARE` of its values and at least `MIN_RATIO` of all its isolated extremes.

Measured on the photo benchmark's images and scenarios (`denoiser.photo_benchmark`: 25 validation
photos, 4 scikit-image photos, 10 structure images) and the 10,000 CIFAR-10 test images with the CIFAR-10
benchmark's seeded noise (scratch measurements of this module as it is):

* lossless noise, per-pixel and per-channel, 0.1-0.9: the moved share of isolated extremes is at most 0.069
  on the photos and 0.174 on CIFAR-10 (a few 32x32 images at amount 0.1); no photo and no CIFAR-10 image of
  any benchmark row (article rule, grayscale, colour, per-channel) is sent to the moved-impulse model;
* noise at 0.1 or 0.3 then JPEG at quality 90 or 75: every image is sent, with a moved share of at least
  0.302 and moved isolated extremes on at least 0.96% of the values; near-extreme impulses (within 15/255):
  every image, at least 0.483 and 4.2%; the validation and scikit-image photos at 0.05 then JPEG at quality
  95 or 50: all 29 sent; at 0.02: 28 (quality 95) and 7 (quality 50), the rest too lightly hit to pass
  `MIN_SHARE`; enlarged 1.5x after noise at 0.1: 27 of 29; shrunk to 0.75x: none at 0.1 (the impulses
  average into mid-greys), all at 0.5;
* clean photos: moved isolated extremes on at most 0.15% of the values, so none is sent; 52 of the 10,000
  clean CIFAR-10 images in grayscale (35 in colour) are, whose own JPEG ringing near black or white looks
  like moved impulses; the Impulse U-Net leaves 99.9% of a clean photo's values as they are.

What it costs: 3 ms for a 512x512 colour photo, 23 ms for 2048x2048, 3 ms for 500 32x32 grayscale images
and 9 ms in colour (this 2-core CPU; 1-3% of the default model's time on ONNX Runtime).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

NEAR = 15 / 255  # a value this close to black or white may be an impulse that moved
AWAY = 0.3  # a neighbour at least this far from the extreme is on the other side of an isolated extreme
MIN_SHARE = 0.003  # share of an image's values that must be moved isolated extremes (clean photos: <= 0.0015)
MIN_RATIO = 0.2  # and share of its isolated extremes (lossless noise: <= 0.174; JPEG'd noise: >= 0.302)
BAND, EVERY = 16, 64  # a tall image is read in bands of BAND rows every EVERY rows


def window_counts(flags: torch.Tensor) -> torch.Tensor:
    """3x3 sums of a (B, C, H, W) uint8 0/1 map, zeros beyond the edges (a pixel's 8 neighbours and itself)."""
    h, w = flags.shape[-2:]
    padded = F.pad(flags, (1, 1, 1, 1))
    rows = padded[..., :h, :] + padded[..., 1:h + 1, :] + padded[..., 2:, :]
    return rows[..., :w] + rows[..., 1:w + 1] + rows[..., 2:]


def isolated_extremes(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) bool: values near black with most neighbours far brighter, or near white with most far darker.

    The centre is never on the other side of itself, so "at least 5 of the 3x3 window" means 5 of its 8
    neighbours.
    """
    dark = (images <= NEAR) & (window_counts((images > AWAY).view(torch.uint8)) >= 5)
    bright = (images >= 1 - NEAR) & (window_counts((images < 1 - AWAY).view(torch.uint8)) >= 5)
    return dark | bright


def bands(images: torch.Tensor, mark: Callable[[torch.Tensor], torch.Tensor], *, context: int,
          every: int = EVERY) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(what `mark` finds in a band, the band's own rows) for each band of `BAND` rows every `every` rows of
    (B, C, H, W) images; an image no taller than `every` is one band, whole.

    `mark` ((B, C, H', W) -> bool, same shape) sees each band with the `context` rows on either side that
    decide its marks, so a band is marked as it would be within the whole image.
    """
    h = images.shape[-2]
    band, every = (BAND, every) if h > every else (h, h)
    for top in range(0, h, every):
        lo, bottom = max(0, top - context), min(h, top + band)
        yield mark(images[..., lo:bottom + context, :])[..., top - lo:bottom - lo, :], images[..., top:bottom, :]


def moved_shares(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) each for (B, C, H, W) images: the share of values that are moved isolated extremes, and their share
    of all isolated extremes (0 when there are none).

    Images taller than `EVERY` rows are read in bands of `BAND` rows every `EVERY` rows (each with the rows
    around it, so a band sees the same neighbours as the whole image): a quarter of the work on a photo, with
    tens of thousands of values or more still voting. Smaller images are read whole.
    """
    everywhere = tuple(range(1, images.ndim))
    moved = both = torch.zeros(len(images), dtype=torch.int64, device=images.device)
    values = 0
    for isolated, rows in bands(images, isolated_extremes, context=1):
        moved = moved + torch.count_nonzero(isolated & (rows > 0) & (rows < 1), dim=everywhere)
        both = both + torch.count_nonzero(isolated, dim=everywhere)
        values += rows[0].numel()
    return moved / values, moved / both.clamp_min(1)


def moved_impulses(images: torch.Tensor) -> torch.Tensor:
    """(B,) bool for (B, C, H, W) images in [0, 1]: True where the image's impulses moved off exact 0 and 1."""
    share, ratio = moved_shares(images)
    return (share >= MIN_SHARE) & (ratio >= MIN_RATIO)
