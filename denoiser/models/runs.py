"""Straight runs of one extreme are structure: one-pixel lines and borders survive salt-and-pepper noise (issue 9).

The default U-Net repaints every exact 0 and 1 outside large clipped regions. Under noise every value of a
one-pixel black line or border is exact (black, or salt that hit it), so that rule repaints all of it, and the
network, which sees where the impulses are and not their values, paints the background over the line. Issue 9
measured it on a standard set of photos that each carry a one-pixel black line along one edge; on the
photo benchmark's structure set 0.0% of border pixels came back right at amounts 0.1-0.5.

Along a horizontal or vertical line, two things tell it from noise:

* **Nothing but extremes.** Lossless salt-and-pepper noise only ever writes exact 0s and 1s, so every value
  along a line is its own extreme or an impulse, never a value strictly between. One such value is evidence
  of a genuine pixel, and a run with more than `MAX_MID` of them on a side is no line: a narrow grey strip
  between two black regions, a clipped region's edge.
* **Its own extreme, far above the noise.** On each side of a value, the `half` values next to it along the
  row (column) must hold that extreme more often than the local noise plausibly would: at least
  half q + z sqrt(half q (1 - q)), and at least FLOOR of them, q being the extreme's share of the
  (2 half + 1)-square box around the value, its own row and column left out so that a line does not raise
  its own bar. Both sides must pass, so a run ends where the line ends and a kept value never spills past
  it. Within `half` of an image's edge a side is cut short and would test too few values (a border would
  lose its corners), so there the two sides are tested as one, n values at n q + z sqrt(2 n q (1 - q)) (one
  test as rare as two), and a side that is whole must still pass on its own.

An extreme on a run of its own kind keeps its value; an impulse on a run of the other kind (salt on a black
line) takes the run's extreme, and is then a known value to the network, like the rest of the line.

With half = 32 and z = 3.5, under noise alone one side passes with probability 4e-13 (amount 0.1), 4e-6
(0.3), 6e-4 (0.5), 4e-4 (0.7) and 1e-4 (0.9), before the test on values between, which noise at amounts
up to 0.7 passes almost never (binomial tails, computed with scipy); both sides must pass. A line keeps a
side with probability 1 - 2e-14 at 0.1, 1 - 6e-7 at 0.3 and 0.998 at 0.5; from 0.7 its extreme no longer
stands clear of the noise and the rule lets it go, as before.

Limits: rows and columns only. Slanted lines, text and line art are not runs (issue 9's structure target
still fails there). Images whose impulses moved off the extremes (JPEG) go to the Impulse U-Net anyway. In
a region with nothing but extremes (clipped, and noisy) only the density test guards, and near the image's
edges, where one test replaces two, an impulse passes now and then: 9 salt values of 262,144 in sixteen
128x128 black images with noise at amount 0.5 (seed 3 of tests/test_runs.py; seed 4 gives none).

Cost: prefix sums (`_Sums`, `_box`) make every window sum two lookups whatever `half` is, about 60 tensor
operations per image, and the tile margin grows by `half` - 4 (the clipped-region window's reach). How many
values a side or the box holds inside the image comes in closed form from one row and one column
(`inside_counts`), not from sums over a map of ones: with that and arithmetic in place of `torch.where` (here
and in the U-Net), ONNX Runtime ran the default model's core in 650 ms instead of 708 on a 1136x1136 tile
(a 1024 tile with its margins), 359 instead of 386 on three 512x512 channels and 55.2 instead of 57.1 on 64
32x32 images on one thread, with the same outputs bit for bit (graphs of both versions in one process,
shuffled order, median of 15 and 40; PyTorch unchanged within this CPU's drift). Earlier figures, measured
before those changes on this project's 2-core CPU of the time (scratch timing, the shipped weights with
and without the rule, alternated in one process, median of 7, per-pixel noise at 0.3): a 512x512 colour
photo 0.375 -> 0.429 s on ONNX Runtime and 0.436 -> 0.518 s on PyTorch, a batch of 500 32x32 colour crops
0.629 -> 0.786 s and 0.855 -> 0.971 s, a 2048x2048 colour photo 7.29 -> 8.53 s and 10.10 -> 12.14 s
(median of 3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from denoiser.models.base import inside_counts

MAX_MID = 2  # values strictly between 0 and 1 that a side of a run may hold (a crossing, a ragged end)
FLOOR = 0.5  # a side's share of the run's extreme is at least this, whatever the noise density

ROWS, COLUMNS = -1, -2  # the axis a run lies along


class _Sums:
    """Sums of one 0/1 map (N, C, H, W) over the `half` values before and after each value along rows and along
    columns (the value left out; nothing beyond the edges counts), each the difference of two prefix sums.

    The map is padded with half + 1 zeros in front and half behind, so every lookup is a constant slice (the
    ONNX export keeps dynamic sizes) and no index needs clipping. Sums are exact in float32 up to 2^24.
    """

    def __init__(self, m: torch.Tensor, half: int) -> None:
        self.half = half
        # While `torch.onnx.export` traces, rows are summed as the columns of the transposed map: ONNX Runtime
        # 1.32 adds up a tensor's last axis one value at a time and its second-to-last a whole row at a time. With
        # the transposes, the row sides of one map took 0.29 ms instead of 0.78 on 64 32x32 images and 3.0 instead
        # of 4.9 on three 512x512 channels (one thread, median of 30; scratch measurement); PyTorch is faster
        # along the last axis (1.0 against 2.8 ms at 512x512), so it keeps that. The sums are the same either way.
        self._transposed = torch.jit.is_tracing()
        rows = m.transpose(-1, -2) if self._transposed else m  # (N, C, H, W) -> (N, C, W, H) when tracing
        self.rows = self._prefix(rows, dim=-2 if self._transposed else -1)
        self.columns = self._prefix(m, dim=-2)

    def _prefix(self, m: torch.Tensor, *, dim: int) -> torch.Tensor:
        """Entry j along `dim`: the sum of the padded line up to j (the other axis is cut to the image)."""
        h = self.half
        return torch.cumsum(F.pad(m, (h + 1, h) if dim == -1 else (0, 0, h + 1, h)), dim=dim)

    def sides(self, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
        if axis == COLUMNS:
            return _sides_of(self.columns, self.half, dim=-2)
        if not self._transposed:
            return _sides_of(self.rows, self.half, dim=-1)
        before, after = _sides_of(self.rows, self.half, dim=-2)
        return before.transpose(-1, -2), after.transpose(-1, -2)  # (N, C, W, H) -> (N, C, H, W)


def _sides_of(c: torch.Tensor, half: int, *, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """From prefix sums `c` along `dim` (padded as `_Sums._prefix` pads): the sums over the `half` values before
    and after each value, as constant slices."""
    def cut(start: int | None, stop: int | None) -> torch.Tensor:
        index = [slice(None)] * c.ndim
        index[dim] = slice(start, stop)
        return c[tuple(index)]

    h = half
    return cut(h, -(h + 1)) - cut(None, -(2 * h + 1)), cut(2 * h + 1, None) - cut(h + 1, -h)


def _box(row_sums: torch.Tensor, half: int) -> torch.Tensor:
    """The (2 half + 1)-square box sums, from each value's sum over its row's 2 half + 1 values: the same sum down
    the columns, from prefix sums."""
    k = 2 * half + 1
    c = torch.cumsum(F.pad(row_sums, (0, 0, half + 1, half)), dim=-2)
    return c[..., k:, :] - c[..., :-k, :]


def on_runs(x: torch.Tensor, *, half: int, z: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(on_black, on_white): bool maps shaped like `x` (N, C, H, W) of the values that lie on a horizontal or
    vertical run of exact 0s (1s), by the test in the module docstring."""
    extremes = [(x <= 0).to(x.dtype), (x >= 1).to(x.dtype)]
    sums = [_Sums(m, half) for m in extremes]
    # Entry 0 per axis: how many values each side holds inside the image, (1, 1, 1, W) along rows, (1, 1, H, 1)
    # along columns; then each extreme's count on each side.
    sides = {axis: [inside_counts(x, reach=half, dim=axis)] + [s.sides(axis) for s in sums]
             for axis in (ROWS, COLUMNS)}
    flags = {}  # per axis, what does not depend on the extreme: the values between, the sides' lengths
    for axis, ((n_before, n_after), (b0, a0), (b1, a1)) in sides.items():
        mid_before, mid_after = n_before - b0 - b1, n_after - a0 - a1  # values strictly between 0 and 1
        n = n_before + n_after  # (1, 1, 1, W) or (1, 1, H, 1)
        whole_before, whole_after = n_before >= half, n_after >= half
        flags[axis] = (mid_before <= MAX_MID, mid_after <= MAX_MID, mid_before + mid_after <= MAX_MID,
                       whole_before, whole_after, whole_before & whole_after, n, z * (2 * n).sqrt())
    # Each extreme's density in the box around a value, its row and column left out so that a run does not
    # raise its own bar.
    (nb_r, na_r), (nb_c, na_c) = sides[ROWS][0], sides[COLUMNS][0]
    n_row, n_column = nb_r + na_r + 1, nb_c + na_c + 1  # (1, 1, 1, W), (1, 1, H, 1)
    n_rest = (n_column * n_row - n_row - nb_c - na_c).clamp_min(1)  # (1, 1, H, W): the box, less the cross
    found = []
    for i, extreme in enumerate(extremes, start=1):
        (b_r, a_r), (b_c, a_c) = sides[ROWS][i], sides[COLUMNS][i]
        row = b_r + a_r + extreme
        q = (_box(row, half) - row - b_c - a_c) / n_rest
        spread = (q * (1 - q)).sqrt()
        # A whole side of `half` values must hold half q + z sqrt(half q (1 - q)) of the extreme (the noise's
        # mean plus z standard deviations), and at least FLOOR of them.
        bar = (half * q + z * math.sqrt(half) * spread).clamp_min(FLOOR * half)
        on = []
        for axis in (ROWS, COLUMNS):
            before, after = sides[axis][i]
            calm_before, calm_after, calm, whole_before, whole_after, both, n, root = flags[axis]
            first, second = (before >= bar) & calm_before, (after >= bar) & calm_after
            # Near an edge a side is cut short and would test too few values: the two sides are tested as one,
            # at a bar that one test clears as rarely as two at z (for normal tails, P(Z > z)^2 ~ P(Z > z sqrt 2)),
            # and a whole side still has to pass on its own.
            one = ((before + after >= torch.maximum(n * q + root * spread, FLOOR * n)) & calm
                   & (first | ~whole_before) & (second | ~whole_after))
            on.append((both & first & second) | (~both & one))  # logic: ONNX Runtime has no Where on bools
        found.append(on[0] | on[1])
    return found[0], found[1]


def decide_runs(x: torch.Tensor, noisy: torch.Tensor, *, half: int,
                z: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For (N, C, H, W) `x` and its impulse mask `noisy` (bool): the image with impulses on a run set to the run's
    extreme, the mask less the run's own extremes, and the map of those filled gaps (bool)."""
    on_black, on_white = on_runs(x, half=half, z=z)
    black, white = x <= 0, x >= 1
    gap_black = noisy & on_black & ~on_white & ~black
    gap_white = noisy & on_white & ~on_black & ~white
    # The gaps are disjoint, so this is exact: x where neither, 0 or 1 where one (ONNX Runtime's Where is several
    # times slower than arithmetic).
    fill_black, fill_white = gap_black.to(x.dtype), gap_white.to(x.dtype)
    x = x * (1 - fill_black - fill_white) + fill_white
    kept = (black & on_black) | (white & on_white)
    return x, noisy & ~kept, gap_black | gap_white
