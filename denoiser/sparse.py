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
or more pixels survive. Lone and paired specks are repainted too, unless they are nearly all of one polarity
where the other would show as well (`noise_like_clusters`): noise brings salt and pepper alike, so a dark
sky of one-pixel white stars with no lone black anywhere is not noise. Where that test cannot speak (no salt
could show on a white page), place can: specks 2-3 pixels from larger detail of their own extreme, the dot of
an "i", a colon, a speck by a clipped region, are kept when the image's small clusters away from detail are
too few for noise to have put even a fifth of an impulse beside it (`beside_detail`).
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
each other, make a cluster of three and are kept.

One-sided specks kept (`noise_like_clusters`, against repainting every small cluster; same script): clean
validation photos 99.87% -> 99.90% of pixels identical (lowest image 59.01 dB either way), the clean
structure set 99.98% -> 100.00%, its star field from 27.61 dB to identical; its lowest image is then the page
of text (37.38 dB: twelve lone black dots). No result with light noise changed (per-pixel 0.0001 / 0.0002 /
0.0005 / 0.001 / 0.003 / 0.005 / 0.009, per-channel 0.003, on all three sets).

Specks beside detail kept (`beside_detail`, against without; a scratch script, mean PSNR capped at 100 dB):
the clean structure set 78.69 -> 95.53 dB, its lowest image from the page of text at 37.38 dB to the text on
colour at 55.33 (of its five white specks, the one away from its letters is repainted); clean
validation photos 77.43 -> 77.64 dB, scikit-image's 68.02 -> 68.46. With per-pixel noise at 0.0001 / 0.0002
the three sets gain 0.00-3.51 dB; at 0.0005 the structure set loses 0.24 dB (one impulse fell 2 pixels from a
border, where the image's other impulses let noise explain 0.1 of one) and scikit-image's photos gain 0.02; at
0.001 these gain 0.01; from 0.002 (to 0.009, and per-channel 0.0005 / 0.003) nothing changes. Counting other
small clusters as detail too cost
scikit-image's cat 73.6 -> 52.1 dB at 0.0002: a salt value landed beside one of its lone genuine whites.
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
# One-sided small clusters (`noise_like_clusters`). If both polarities' counts are Poisson with one mean, as
# under balanced noise, the test takes a side for detail at worst once in 7.7 billion images (at a mean of 15;
# computed). The share is strict because a kept impulse costs far more than a repainted speck, which sits on a
# background of its own tone: at 0.05, a validation photo with 2,496 genuine lone blacks and noise at amount
# 0.0005 kept 121 of its impulses and came back at 44.3 dB, against 60.7 at 0.003, where no light noise changed
# a result.
MIN_EXPECTED = 30
MAX_OTHER = 0.003
LARGE_MAP = 256 * 256  # `count_set` counts maps of at least this many values one by one on the CPU
# Specks beside detail (`beside_detail`): a small cluster with a value of its own extreme 2-3 pixels away (the dot
# of an "i", a colon, a full stop, a speck by a clipped region). They are kept only where the image's other
# small clusters, those away from detail, let noise explain fewer than this many of the specks beside it.
REACH = 3  # at most 4: `_within_reach` spreads by 1 and then by REACH - 1
MAX_NOISE_BESIDE = 0.2


def _neighbours(flags: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) uint8: how many of each value's 8 neighbours are set in the 0/1 uint8 map (none beyond edges)."""
    return window_counts(flags) - flags


def count_set(marks: torch.Tensor) -> torch.Tensor:
    """(N,) float64: how many values of each of the N maps of an (N, ...) map are set (nonzero).

    On the CPU large maps are counted one by one: torch 2.14 counted over the dimensions of a 2048x2048 colour
    map in 39-45 ms and the whole map in 3 ms (scratch measurements). A batch of small maps (500 CIFAR-10
    images) and a GPU's batch are counted in one call.
    """
    if marks.device.type == "cpu" and marks[0].numel() >= LARGE_MAP:
        return torch.tensor([float(torch.count_nonzero(m)) for m in marks], dtype=torch.float64)
    return torch.count_nonzero(marks, dim=tuple(range(1, marks.ndim))).double()


def _clusters(extreme: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For one polarity's (B, C, H, W) bool map of exact extremes: its small clusters, and each value's count of
    neighbours of that extreme (uint8)."""
    flags = extreme.view(torch.uint8)
    count = _neighbours(flags)
    one = (extreme & (count == 1)).view(torch.uint8)
    return extreme & ((count == 0) | ((one > 0) & (_neighbours(one) > 0))), count


def _spread(marks: torch.Tensor, by: int, *, dim: int) -> torch.Tensor:
    """The (B, C, H, W) bool map with each mark copied up to `by` values along `dim` on either side."""
    out, n = marks.clone(), marks.shape[dim]
    if by < n:
        out.narrow(dim, by, n - by).logical_or_(marks.narrow(dim, 0, n - by))
        out.narrow(dim, 0, n - by).logical_or_(marks.narrow(dim, by, n - by))
    return out


def _within_reach(marks: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) bool: the values within `REACH` (3) pixels (Chebyshev) of a mark of the bool map.

    Spread by 1 and then by 2 reaches 3 on either side: four shifted ORs per axis, on bytes.
    """
    for dim in (-1, -2):
        marks = _spread(_spread(marks, 1, dim=dim), REACH - 1, dim=dim)
    return marks


def _pixels(marks: torch.Tensor) -> torch.Tensor:
    """(B,) float64: how many pixels of each image have a mark in any channel of the (B, C, H, W) map."""
    return count_set(marks.any(dim=1, keepdim=True))


def beside_detail(extreme: torch.Tensor, small: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) bool: the small clusters of one polarity to keep as detail, for they sit beside more of it.

    `extreme` is the polarity's map, `small` its small clusters and `count` each value's count of neighbours of
    that extreme (from `_clusters`). A small cluster is beside detail when a value of a larger cluster of its
    extreme lies 2 to `REACH` pixels away: text's dots and clipped specks are, noise only where it happens to
    land. Where an impulse could land alone (no neighbour of that extreme), a share q of the room is beside
    detail; an image whose small clusters away from detail number m then has about m q / (1 - q) impulses
    beside it. Under `MAX_NOISE_BESIDE` of them, the specks beside detail are taken for detail: a clean page
    of text keeps its dots, while on a noisy one the impulses away from its text keep them all repainted.
    """
    # Small clusters and the room have no value of their extreme next to them, so a value of a larger cluster
    # within reach is 2 to REACH pixels away. Other small clusters do not count: two impulses are often that close.
    beside = _within_reach(extreme & ~small)
    room = count == 0
    q = _pixels(room & beside) / _pixels(room).clamp_min(1)
    away = _pixels(small) - _pixels(small & beside)
    expected = away * q / (1 - q).clamp_min(1e-9)
    return small & beside & (expected < MAX_NOISE_BESIDE).view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)


def small_clusters(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) bool: exact 0s and 1s alone among their 8 neighbours, or in a pair (8-connected) with one other.

    A value with exactly one same-valued neighbour is in a pair when that neighbour has exactly one too; a
    neighbour with exactly one same-valued neighbour of its own can only be that one, so counting them works.
    """
    return _clusters(images <= 0)[0] | _clusters(images >= 1)[0]


def noise_like_clusters(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) bool: the small clusters of each image, less those of a polarity that noise does not explain.

    Salt-and-pepper noise hits both ways alike, so per value of room it leaves as many lone whites as lone
    blacks. When one polarity's small clusters are many (`MIN_EXPECTED` of the other would then be expected)
    and the other's are under `MAX_OTHER` of that, the many are not noise: one-pixel stars on a dark sky, the
    highlights or the dark specks of a clean photo. They are kept with the rest of the detail.
    """
    found, n, room, kept = [], [], [], []
    for extreme in (images <= 0, images >= 1):
        small, count = _clusters(extreme)
        found.append(small)
        kept.append(beside_detail(extreme, small, count))
        n.append(count_set(small))
        # The room an impulse of this polarity has to land alone: the values with no such neighbour.
        room.append(images[0].numel() - count_set(count))
    # What each polarity's rate would make the other show: its count times the rooms' ratio.
    expects = [n[0] * room[1] / room[0].clamp_min(1), n[1] * room[0] / room[1].clamp_min(1)]
    per_image = (-1,) + (1,) * (images.ndim - 1)  # (B,) -> (B, 1, 1, 1)
    noise_like = []
    for side in (0, 1):
        detail = (expects[side] >= MIN_EXPECTED) & (n[1 - side] <= MAX_OTHER * expects[side])
        noise_like.append(found[side] & ~detail.view(per_image) & ~kept[side])
    return noise_like[0] | noise_like[1]


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
    return light[:, None, None, None] & ~noise_like_clusters(images)  # (B,) -> (B, 1, 1, 1)
