"""Strokes of one extreme, too large to be noise: text, slanted lines and line art keep their black and white.

The default U-Net repaints every exact 0 and 1 outside large clipped regions, and `denoiser.models.runs` spares
only horizontal and vertical runs. Under noise the rest of a black stroke (a letter, a slanted line, a drawing)
is repainted with its background: on the photo benchmark's structure set 0.2-2.4% of the text and line-art
pixels came back right at amounts 0.1-0.5 (issue 9).

What tells a stroke from noise is its size. The impulses of one polarity, at density d, make 8-connected
clusters whose size has a thin tail: `MIN_SIZE` lists, for each density, a size that noise alone did not reach
in a simulation of 12.6 million values (three 2048x2048 maps; the largest cluster was 6, 9, 12, 14, 19, 23, 28,
44, 52 and 63 values at d = 0.02, 0.04, ..., 0.20; each bar is about 1.3 times that). A glyph or a line is
hundreds of values. Noise does not keep every cluster from growing, though: the impulses next to a stroke
join it, so what is kept carries them along: specks hugging the stroke at amount 0.1, whiskers along a
slanted line at 0.2-0.25, and at 0.3 pieces of strokes tangled with the noise around them (README, Photos).

A cluster of the image's exact extreme `v` is kept, the input's values restored over the network's, when

* it holds at least `MIN_SIZE` values for the density of the channel's impulses of `v`, read where they show
  alone (`impulse_density`), so that the strokes themselves do not raise the bar; above a density of 0.16
  (noise at amount 0.32) noise alone makes clusters too large to tell and the rule stands aside;
* the network repainted at least half of it (more than `REPAINTED_BY` away from `v`): what it already kept,
  a clipped region, is its own business;
* it stands out from its surroundings: the median distance from `v` of the values that touch it (its
  8-connected ring) is at least `MIN_CONTRAST`. A photo's shadow, clipped to black in places and near black
  around, with the noise that joined it, fails this and stays the network's; a black letter on a page or a
  dark line across a sky passes.

Images whose impulses moved off the extremes (JPEG) never reach it: they go to the Impulse U-Net.

Measured against the default model without this rule (`python -m benchmarks.photos --without-strokes`, its
column "Default, no stroke rule"; per-pixel / per-channel noise at 0.1): the share of structure pixels
correct rose for text from 0.5 / 0.7% to 66.6 / 60.2%, for line art from 2.2 / 2.4% to 82.5 / 57.9%, for lines
from 54.2% to 82.8 / 72.9%, and the structure set's PSNR from 30.06 / 29.89 to 32.70 / 32.22 dB; at 0.3 it
helps less (text 7.4 / 3.1%, line art 24.2 / 10.1%), from 0.5 not at all. The validation photos lost 0.03 dB
at per-pixel 0.3 and 0.06 dB at per-channel 0.1 (three photos with thin genuine highlights or dark strokes,
kept with the impulses that touch them), scikit-image's photos nothing. Salt that landed on a black stroke
is not restored: it is a white value of the page.

Those figures are for bars read from the plain share of the extreme. Read from the impulse density instead
(same benchmark, against that run): text 82.0 / 74.9% at 0.1 and 41.0 / 0.6% at 0.3, line art 89.5 / 68.1%
and 35.2 / 11.6%, lines 84.1 / 75.4% and 58.8 / 57.3%; the structure set 33.29 / 32.79 dB at 0.1 and 28.43 /
27.75 at 0.3 (per-channel 0.3 sits at the table's end: a channel's density there is 0.15); the validation
photos' per-channel 0.1 and 0.3 rows -0.05 and -0.01 dB, every other photo row unchanged.

Connected components come from `scipy.ndimage.label`, once per polarity for the whole batch: its maps are
stacked with a blank row between them (`_stacked`), which no cluster crosses.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from denoiser.moved import window_counts
from denoiser.sparse import count_set

# (density of the extreme's impulses in the channel, the smallest cluster kept), in order; none above the last.
# The simulation went on to 0.20 (bars 65 and 80 at 0.18 and 0.20); there photos lost up to 0.25 dB for little
# structure kept, so the rule stops at amount 0.32.
MIN_SIZE = ((0.02, 8), (0.04, 12), (0.06, 15), (0.08, 18), (0.10, 24), (0.12, 29), (0.14, 35), (0.16, 55))
DENSITY_Z = 3.0  # `impulse_density` reads the upper end of this many standard deviations
REPAINTED_BY = 2 / 255  # a value the network moved further than this from the input was repainted
MIN_CONTRAST = 0.3  # the median distance from the extreme of the values around a kept cluster
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connected
_AROUND = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def min_size(density: float) -> int | None:
    """The smallest cluster of an extreme kept in a channel whose impulses of that extreme have this `density`;
    None when noise alone makes clusters too large to tell."""
    for upto, size in MIN_SIZE:
        if density <= upto:
            return size
    return None


def impulse_density(at: torch.Tensor) -> np.ndarray:
    """(B*C,) float64 for a (B, C, H, W) bool map of one exact extreme: each channel's density of its impulses,
    erring high.

    Read where noise shows alone: of the values with no neighbour at that extreme, the share that are at it.
    Impulses land independently, so under noise at density d that share is d, while the values of a stroke,
    which have neighbours of their own, never count. The plain share of the extreme would count the strokes
    as noise: on a page of text at amount 0.1 it read 0.15 where the pepper was 0.05 (scratch measurement).
    Few values are alone in a small image under dense noise (a 32x32 one at amount 0.9 has about 8), so the
    estimate is the upper end of its `DENSITY_Z`-sigma Wilson interval, and never above the plain share, which
    errs high as well.
    """
    maps = (at.shape[0] * at.shape[1], *at.shape[2:])  # (B, C, H, W) -> (B*C, H, W): one count per channel
    flags = at.view(torch.uint8)
    alone = window_counts(flags) == flags  # (B, C, H, W): the 3x3 count is the value's own, no neighbour's
    n = count_set(alone.reshape(maps))
    p = count_set((alone & at).reshape(maps)) / n.clamp_min(1)
    share = count_set(at.reshape(maps)) / (at.shape[2] * at.shape[3])
    n1 = n.clamp_min(1)
    z2 = DENSITY_Z**2 / n1
    upper = (p + z2 / 2 + DENSITY_Z * torch.sqrt(p * (1 - p) / n1 + z2 / (4 * n1))) / (1 + z2)
    return torch.where(n > 0, torch.minimum(upper, share), share).cpu().numpy()


def _stacked(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N*(H+1), W): the maps one under another, each followed by a row of False, which no
    cluster crosses. One 2D labelling of the stack costs what labelling the maps one by one does, without a call
    per map (a batch of 1,500 32x32 channels); a 3D labelling was 2.5x slower (scratch timing, 2048x2048)."""
    n, h, w = maps.shape
    return np.concatenate([maps, np.zeros((n, 1, w), dtype=bool)], axis=1).reshape(n * (h + 1), w)


def _unstacked(where: np.ndarray, *, h: int, w: int) -> np.ndarray:
    """Flat positions in the stack of `_stacked` -> the same values' flat positions in the (N, H, W) maps."""
    return where - (where // ((h + 1) * w)) * w


def _contrast(x: np.ndarray, at: np.ndarray, labels: np.ndarray, where: np.ndarray, value: float,
              candidates: np.ndarray) -> np.ndarray:
    """For each candidate cluster: the median distance from `value` of the values that touch it, each counted
    once. `x` is the (N, H, W) input, `at` and `labels` are in the stacked layout, and `where` holds the stacked
    flat positions of the candidates' values."""
    h, w = x.shape[1:]
    rows, cols = np.divmod(where, w)
    owners, ring = [], []
    for dy, dx in _AROUND:
        r, c = rows + dy, cols + dx
        # Off the stack's ends or sides, or on a separator row, is outside the image.
        inside = (r >= 0) & (r < at.shape[0]) & (c >= 0) & (c < w) & (r % (h + 1) != h)
        spot = r[inside] * w + c[inside]
        fresh = ~at.ravel()[spot]  # the extreme's own values are the cluster's, or another's
        owners.append(labels.ravel()[where[inside][fresh]])
        ring.append(spot[fresh])
    pairs = np.unique(np.stack([np.concatenate(owners), np.concatenate(ring)]), axis=1)  # (2, ring values)
    distance = np.abs(x.ravel()[_unstacked(pairs[1], h=h, w=w)] - value)
    return np.asarray(ndimage.median(distance, labels=pairs[0], index=candidates), dtype=np.float64)


def _one_polarity(x: np.ndarray, out: np.ndarray, at: np.ndarray, value: float, *, bars: np.ndarray) -> np.ndarray:
    """Flat positions in the (N, H, W) input `x` of its kept clusters of `value`, given the network's `out` (same
    layout), where `x` holds `value` (`at`, (N, H, W) bool), and each map's smallest cluster kept (`bars`, (N,),
    0 for none)."""
    n, h, w = x.shape
    at = _stacked(at)
    labels, count = ndimage.label(at, structure=_EIGHT)
    where = np.flatnonzero(at)
    if count == 0:
        return where
    owner_of = labels.ravel()[where]
    sizes = np.bincount(owner_of, minlength=count + 1)
    bar = np.zeros(count + 1, dtype=np.int64)
    bar[owner_of] = bars[where // ((h + 1) * w)]
    flat = _unstacked(where, h=h, w=w)
    repainted = np.bincount(owner_of, weights=np.abs(out.ravel()[flat] - value) > REPAINTED_BY, minlength=count + 1)
    keep = (bar > 0) & (sizes >= bar) & (2 * repainted >= sizes)  # label 0, the background, has no bar
    candidates = np.flatnonzero(keep)
    if len(candidates):
        keep[candidates] = _contrast(x, at, labels, where[keep[owner_of]], value, candidates) >= MIN_CONTRAST
    return flat[keep[owner_of]]


def kept_strokes(images: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) bool: the exact extremes of `images` in clusters that are strokes, not noise (module
    docstring), given the network's output `out` of the same shape; both in [0, 1]."""
    if images.shape != out.shape:
        raise ValueError(f"images {tuple(images.shape)} and out {tuple(out.shape)} differ in shape")
    b, c, h, w = images.shape
    x = images.detach().float().cpu().numpy().reshape(b * c, h, w)  # (B, C, H, W) -> (B*C, H, W)
    y = out.detach().float().cpu().numpy().reshape(b * c, h, w)  # as `x`
    kept = np.zeros(x.size, dtype=bool)
    for value in (0.0, 1.0):
        at = images == value
        bars = np.array([min_size(float(d)) or 0 for d in impulse_density(at)])  # (B*C,)
        if bars.any():
            kept[_one_polarity(x, y, at.cpu().numpy().reshape(b * c, h, w), value, bars=bars)] = True
    return torch.from_numpy(kept.reshape(b, c, h, w)).to(images.device)  # (B*C*H*W,) -> (B, C, H, W)
