"""Geometric self-ensemble: a network run on flips and transposes of its input, each answer turned back, and
the answers averaged (the "self-ensemble" of Lim et al., "Enhanced Deep Residual Networks for Single Image
Super-Resolution", 2017, after Timofte, Rothe and Van Gool, "Seven ways to improve example-based single image
super resolution", 2016).

A convolutional network is not invariant to these eight views of an image, so its errors in one view are
partly independent of those in another, and their mean is closer to the truth than any one of them. The
Impulse U-Net (`denoiser.models.detect_fill`), which the default model runs on noisy JPEGs, gains most: its
detector's verdicts on the smeared impulses, the fill they decide and the refiner's correction all move with
the view. In the photo benchmark (`python -m benchmarks.photos`; README, Photos), eight views of each of the
25 validation photos against one: +1.12 / +0.96 dB with noise at amount 0.1 saved as JPEG at quality 90 / 75,
+0.86 / +0.84 dB at 0.3, +1.51 / +1.10 / +0.99 dB with near-extreme impulses at 0.1 / 0.3 / 0.5. Scratch
runs on 8 of the photos at amount 0.1 (with the refiner's second run): two views (the image and its
transpose) gained +0.62 / +0.45 dB at quality 90 / 75 where eight gained +1.02 / +0.78, and the refiner alone
over eight views (the pair's output from one) +0.30 / +0.28 dB. On one of them at quality 75, averaging the
detector's logits alone over eight views, or the fill alone, gained 0.07 dB where all eight views gained
0.70: every stage runs in every view.

Each view costs a whole pass, so a runner bounds the work per image (`passes`): all its views on small
images, fewer as images grow, one on large ones, where the wait would outgrow the gain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

VIEWS = 8
# View k is bit 2 (transpose), then bit 0 (mirror left-right) and bit 1 (upside down). The order puts the views
# that differ most first: two passes take the image and its transpose, four add their mirror images.
ORDER = (0, 4, 1, 5, 2, 6, 3, 7)
# Pixels per image, times passes, that a runner may spend on the views: eight views of a 481x321 photo, four
# of a 512x512 one, three of a 768x512 one, two up to 0.625 megapixels, one above. The most that the views add
# is about one pass over a 1.25-megapixel image (2.4 s for a 481x321 noisy JPEG in eight views, on 2 CPU cores).
PIXEL_BUDGET = 1_250_000


def view(x: torch.Tensor, k: int) -> torch.Tensor:
    """View k of an (..., H, W) tensor; (..., W, H) for the transposed views."""
    if not 0 <= k < VIEWS:
        raise ValueError(f"view must be in [0, {VIEWS}), got {k}")
    x = x.transpose(-1, -2) if k & 4 else x
    x = x.flip(-1) if k & 1 else x
    return x.flip(-2) if k & 2 else x


def unview(y: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of `view`: an answer for view k back in the image's own orientation."""
    if not 0 <= k < VIEWS:
        raise ValueError(f"view must be in [0, {VIEWS}), got {k}")
    y = y.flip(-2) if k & 2 else y
    y = y.flip(-1) if k & 1 else y
    return y.transpose(-1, -2) if k & 4 else y


def passes(height: int, width: int, *, most: int, budget: int = PIXEL_BUDGET) -> int:
    """How many views an image of this size gets: as many as `budget` pixels allow, between 1 and `most`."""
    if not 1 <= most <= VIEWS:
        raise ValueError(f"most must be in [1, {VIEWS}], got {most}")
    return max(1, min(most, budget // max(1, height * width)))


def ensembled(run: Callable[[Sequence[torch.Tensor]], list[torch.Tensor]], parts: Sequence[torch.Tensor],
              *, count: int) -> list[torch.Tensor]:
    """`run` (many inputs to as many outputs, shapes kept) on the first `count` views of every part, each answer
    turned back and the answers averaged per part. One view is `run` alone."""
    if count == 1:
        return run(parts)
    sums: list[torch.Tensor] | None = None
    for k in ORDER[:count]:
        answers = [unview(y, k) for y in run([view(p, k) for p in parts])]
        # Out of place: an answer may share memory with its input (a core that returns what it was given).
        sums = answers if sums is None else [s + a for s, a in zip(sums, answers)]
    assert sums is not None
    return [s / count for s in sums]
