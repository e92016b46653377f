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

* it holds at least `MIN_SIZE` values for the image's share of `v` in that channel: the share counts the
  genuine extremes as noise, so the bar errs high; above a share of 0.2 (noise at amount 0.4, or less on an
  image with extremes of its own: a page of text at 0.3) noise alone makes clusters of hundreds and the rule
  stands aside;
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

Connected components come from `scipy.ndimage.label`, once per polarity for the whole batch: its maps are
stacked with a blank row between them (`_stacked`), which no cluster crosses.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

# (share of the channel's values at the extreme, the smallest cluster kept), in order; none above the last.
MIN_SIZE = ((0.02, 8), (0.04, 12), (0.06, 15), (0.08, 18), (0.10, 24), (0.12, 29), (0.14, 35), (0.16, 55),
            (0.18, 65), (0.20, 80))
REPAINTED_BY = 2 / 255  # a value the network moved further than this from the input was repainted
MIN_CONTRAST = 0.3  # the median distance from the extreme of the values around a kept cluster
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connected
_AROUND = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def min_size(share: float) -> int | None:
    """The smallest cluster of an extreme kept in a channel where `share` of the values are that extreme; None
    when noise alone makes clusters too large to tell."""
    for upto, size in MIN_SIZE:
        if share <= upto:
            return size
    return None


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
        at = x == value
        bars = np.array([min_size(float(s)) or 0 for s in at.mean(axis=(1, 2))])  # (B*C,)
        if bars.any():
            kept[_one_polarity(x, y, at, value, bars=bars)] = True
    return torch.from_numpy(kept.reshape(b, c, h, w)).to(images.device)  # (B*C*H*W,) -> (B, C, H, W)
