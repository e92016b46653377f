"""Is an image clean, or nearly so? The test that keeps genuine black and white detail (issue 9).

The default model's U-Net repaints every value that is exactly 0 or 1, except inside large clipped regions
(`denoiser.models.unet`). On a noisy image that is right. On a clean one it is not: a photo has specks of
exact black and white that are not noise (ringing of the JPEG it once was, small highlights, a one-pixel
black edge), and drawings have lines and text of exact black. Repainted, they cost a clean validation photo
up to 1.1% of its pixels and a page of line art 90 dB.

Pixel by pixel a lone black value cannot be told from a pepper impulse. The whole image can, by a vote like
`denoiser.moved`'s: salt-and-pepper noise at amount p leaves about p of the values as *small clusters*,
exact extremes with no neighbour of the same value or one such neighbour that has no other (a pair). Clean
images have far fewer. An image whose small clusters are under `MAX_SHARE` of its values is taken as clean or
lightly hit, and there only the small clusters are impulses: every other exact 0 or 1 keeps its value, since
at that density noise hardly ever makes a cluster of three. Lines, text, borders and clipped specks of three
or more pixels survive; lone specks are repainted (a one-pixel star on a black sky is salt to any test).
Very dense noise also leaves few small clusters (at amount 0.9 most impulses touch one of their own), so an
image whose values the network's own rule flags by more than `MAX_FLAGGED` is never taken as clean.

Measured on clean images (scratch measurements of this rule): at most 0.81% of the values of the 25
validation photos are small clusters, 1.30% of the 298 training photos (median 0.10%), 0.23% of
scikit-image's photos, 0.19% of the structure set's; with noise at amount p, the validation photos show p
to p + 0.8%, so they are read as lightly hit up to about p = 0.005 and never from p = 0.012. The default
model without and with this rule, per-pixel noise (`load_denoiser(keep_detail=False)` and the default; mean
PSNR, lowest image, pixels identical; a scratch script, one seed per image):

* validation photos, clean: 64.86 dB (lowest image 49.75) with 98.89% of pixels identical -> 73.90 dB
  (59.01), 99.87%; amount 0.003 / 0.005 / 0.007 / 0.009: 54.15 / 52.45 / 51.34 / 50.43 -> 55.33 / 53.00 /
  50.80 / 49.58 dB; from 0.012 (0.85-0.95 checked) the same;
* structure set, clean: 24.14 dB (10.51), 96.34% -> 95.67 dB (27.61), 99.98%; 0.003 / 0.005 / 0.007 /
  0.009: 24.08 / 24.03 / 24.03 / 24.02 -> 43.98 / 41.65 / 39.99 / 39.71 dB; from 0.02 the same.

Where it loses (0.5-0.9 dB at 0.007-0.009), impulses that touch a genuine extreme of their own value, or
each other, make a cluster of three and are kept. The lowest structure image is the star field, whose
one-pixel white stars are repainted.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Tall images are read in bands, as for the moved-impulse test (`denoiser.moved.bands`).
from denoiser.moved import EVERY, bands, window_counts

MAX_SHARE = 0.01  # small clusters on fewer than this share of an image's values: clean or lightly hit
# ... unless the exact rule would repaint more than this share. Dense noise leaves few small clusters too (at
# amount 0.9 most impulses touch one of their own: 0.8-1.5% of the values), but the rule then flags about 90%;
# a clean page of line art, whose strokes it flags, stays far below.
MAX_FLAGGED = 0.3
FLAG_CONTEXT = 4  # rows around a band that the exact rule looks at (the U-Net's 9x9 clipped-region window)


def _neighbours(flags: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) uint8: how many of each value's 8 neighbours are set in the 0/1 uint8 map (none beyond edges)."""
    return window_counts(flags) - flags


def small_clusters(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) bool: exact 0s and 1s alone among their 8 neighbours, or in a pair (8-connected) with one other.

    A value with exactly one same-valued neighbour is in a pair when that neighbour has exactly one too; a
    neighbour with exactly one same-valued neighbour of its own can only be that one, so counting them works.
    """
    found = torch.zeros(images.shape, dtype=torch.bool, device=images.device)
    for extreme in (images <= 0, images >= 1):
        flags = extreme.view(torch.uint8)
        count = _neighbours(flags)
        one = (extreme & (count == 1)).view(torch.uint8)
        found |= extreme & ((count == 0) | ((one > 0) & (_neighbours(one) > 0)))
    return found


def banded_share(images: torch.Tensor, found: Callable[[torch.Tensor], torch.Tensor], *, context: int,
                 every: int = EVERY) -> torch.Tensor:
    """(B,): the share of each image's values that `found` ((B, C, H, W) -> bool) marks.

    Images taller than `every` rows are read in bands of `BAND` rows every `every` rows, each with the `context`
    rows on either side that decide its marks: with `EVERY`, a quarter of the work, with tens of thousands of
    values voting.
    """
    count = torch.zeros(len(images), dtype=torch.int64, device=images.device)
    values = 0
    for marked, rows in bands(images, found, context=context, every=every):
        count = count + torch.count_nonzero(marked, dim=tuple(range(1, images.ndim)))
        values += rows[0].numel()
    return count / values


def small_share(images: torch.Tensor) -> torch.Tensor:
    """(B,): the share of each image's values in small clusters (read in bands; two rows decide a cluster)."""
    return banded_share(images, small_clusters, context=2)


def kept_extremes(images: torch.Tensor, *,
                  flagged: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor | None:
    """(B, C, H, W) bool for images in [0, 1]: the values an image read as clean or lightly hit keeps, whatever
    a network made of them (every value but its small clusters); all False for the other images.

    `flagged` is the exact rule the values are held against: (B, C, H, W) -> bool, the values it repaints. On
    the CPU, None when no image of the batch is read so (the common case, for a quarter of the work);
    a GPU gets the mask always, as asking would wait for the device.
    """
    light = small_share(images) < MAX_SHARE
    if images.device.type == "cpu" and not light.any():
        return None
    # A coarse vote is enough to tell about 90% flagged from under 30%, and the rule's windows are dear.
    light &= banded_share(images, flagged, context=FLAG_CONTEXT, every=4 * EVERY) < MAX_FLAGGED
    return light[:, None, None, None] & ~small_clusters(images)  # (B,) -> (B, 1, 1, 1)
