"""Colour from colour: the values a per-channel denoiser repainted, re-estimated from the pixel's kept channels.

The default model repaints each colour channel on its own (a grayscale network, channel by channel), so a
value hit by per-channel noise is guessed from its neighbours in that channel alone, although the same
pixel's other channels may be intact. Natural images keep the difference between two colour channels
nearly constant over a few pixels, the assumption colour demosaicing rests on (e.g. Pei and Tam, "Effective
color interpolation in CCD color filter arrays using signal correlation", 2003). So a repainted value of
channel c, at a pixel whose channel o was kept, is re-estimated as

    x_o(p) + mean over a window of (x_c - x_o), taken where both values were kept,

with the smallest window (3x3, then 5x5, then 7x7, as the adaptive median grows its window) that holds such
a pixel, and the mean difference of the denoiser's own output over the 7x7 window, the pixel left out, when
none does. Channel o is used only where, over the 7x7 window, that difference varies clearly less than
channel c itself (or not at all): true of texture and edges that all channels share, false where one of
the two is clipped and the other is not. The estimates from the usable channels are averaged. Kept values,
and values with no usable channel, keep the denoiser's output.

A pixel with every channel repainted (per-pixel salt-and-pepper hits whole pixels) has three estimates made
from the same neighbours channel by channel, each with its own error. There, each channel becomes the mean
of the pixel's three values plus that channel's 3x3 mean offset from the mean of the three (both from the
first step's output): brightness from all three estimates, colour from the neighbourhood. Measured on the
25 validation photos and the 3 colour photos of the photo benchmark's scikit-image set (its noise draws;
scratch measurement), against the first step alone: +0.15 / +0.13 / +0.07 dB and +0.05 / +0.05 / +0.06 dB
with per-pixel noise at 0.1 / 0.5 / 0.9, +0.60 / +0.79 and +0.25 / +0.63 dB with per-channel noise at 0.3
/ 0.7. Weighting the pixel's own value 2 or 3 times the others' gained at most 0.04 dB and lost up to 0.2
dB (per-channel 0.7); a 5x5 or 7x7 offset lost up to 0.3 dB on the photos and 0.5 dB on the structure set
with per-pixel noise at 0.1. The same mean with colour differences taken from kept values only, as in the
first step, scored within 0.1 dB of this for several times the work.

The default model uses both steps on colour images (`denoiser.runners.ModelDenoiser`, `colour_fill`). On the
25 validation photos (`python -m benchmarks.photos --without-fill`: the default model against its network
alone, same run): per-channel noise at 0.1 / 0.3 / 0.5 / 0.7 gains 11.0 / 7.6 / 4.9 / 2.6 dB, per-pixel
noise at 0.1 / 0.5 / 0.9 1.10 / 0.31 / 0.09 dB; clean photos come back at 62.9 dB instead of 49.5
(genuinely saturated channels, which the network's rule takes for impulses, are recovered from the others);
after JPEG it loses 0.9-1.5 dB, where the kept channels carry the impulses' smeared halos.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

WINDOWS = (3, 5, 7)  # tried smallest first; odd
KEPT_TOLERANCE = 1e-5  # an output this close to the input counts as kept (above the U-Net's REPAINT_MARGIN)
# Rows per band: bounds the extra memory on multi-megapixel photos. A process denoising one 2048x2048 colour
# photo (the default model, ONNX Runtime, noise at 0.5) peaked at 1.21-1.22 GB with per-pixel and 1.23-1.25 GB
# with per-channel noise, against 1.13 GB without the fill (/usr/bin/time). Before what was kept was worked
# out band by band too, 1.35-1.36 GB; with 512-row bands then, 1.53 GB.
BAND_ROWS = 256

# Below this share of a band's pixels needing work, window sums are taken only at those pixels (from their
# 7x7 neighbourhoods); above it, for every pixel from summed-area tables. Per-pixel noise at 0.5 left 1.3-1.5%
# of pixels with work (scikit-image's astronaut, whole and in 32x32 crops); per-channel noise at 0.3 leaves
# about 60% (every pixel with some channels hit and some not: 1 - 0.7^3 - 0.3^3).
SPARSE_SHARE = 0.1


class _WindowSums:
    """Sums over k x k windows (zeros beyond the edges) of one (N, 1, H, W) tensor, for every k in `windows`,
    at every pixel, from one summed-area table: each window size then costs four lookups, not k * k
    additions. float64, so sums over megapixel bands stay exact to far below a gray level."""

    def __init__(self, t: torch.Tensor, windows: tuple[int, ...]) -> None:
        self.r, (self.h, self.w) = max(windows) // 2, t.shape[-2:]
        r = self.r
        # One more zero row and column in front: the table's row i holds the sum of padded rows up to i.
        self.table = F.pad(t.double(), (r + 1, r, r + 1, r)).cumsum(-1).cumsum(-2)

    def __call__(self, window: int) -> torch.Tensor:
        q, r, h, w, s = window // 2, self.r, self.h, self.w, self.table
        hi, lo = slice(r + 1 + q, r + 1 + q + h), slice(r - q, r - q + h)  # rows ending the window, before it
        right, left = slice(r + 1 + q, r + 1 + q + w), slice(r - q, r - q + w)
        return (s[..., hi, right] - s[..., lo, right] - s[..., hi, left] + s[..., lo, left]).float()


class _Patches:
    """Window sums and centre values on (P, C, 2r + 1, 2r + 1) neighbourhoods gathered around a few pixels: the
    sparse counterpart of `_WindowSums` and the identity, so the same arithmetic runs on either."""

    def __init__(self, r: int) -> None:
        self.r = r

    def sums(self, t: torch.Tensor) -> Callable[[int], torch.Tensor]:
        def window_sum(window: int) -> torch.Tensor:
            lo, hi = self.r - window // 2, self.r + window // 2 + 1
            return t[..., lo:hi, lo:hi].sum(dim=(-2, -1), keepdim=True)  # (P, 1, 1, 1)

        return window_sum

    def at(self, t: torch.Tensor) -> torch.Tensor:
        return t[..., self.r:self.r + 1, self.r:self.r + 1]  # (P, C, 1, 1)

    @staticmethod
    def gather(t: torch.Tensor, pixels: tuple[torch.Tensor, ...], r: int) -> torch.Tensor:
        """(N, C, H, W) -> (P, C, 2r + 1, 2r + 1): each pixel's neighbourhood, zeros beyond the edges."""
        n, y, x = pixels
        padded = F.pad(t, (r, r, r, r))
        _, c, hp, wp = padded.shape
        # Flat indices into the padded tensor, one lookup: 5 ms where indexing four dimensions at once took 26
        # (500 32x32 crops, per-pixel noise; profiler).
        steps = torch.arange(-r, r + 1, device=t.device)
        window = (steps[:, None] * wp + steps[None, :]).flatten()  # (K * K,): the window, row by row
        planes = (n[:, None] * c + torch.arange(c, device=t.device)) * (hp * wp)  # (P, C): each channel's start
        index = planes[:, :, None] + ((y + r) * wp + x + r)[:, None, None] + window  # (P, C, K * K)
        k = 2 * r + 1
        return padded.take(index).reshape(-1, c, k, k)  # (P, C, K * K) -> (P, C, K, K)


def _pair_estimates(noisy: torch.Tensor, estimate: torch.Tensor, observed: torch.Tensor, neighbours: torch.Tensor,
                    c: int, o: int, windows: tuple[int, ...], sums: Callable, at: Callable) -> dict:
    """For channels c and o: (c, o) -> channel c's value from channel o's and where to trust it, and (o, c)
    the other way round, as the module docstring says."""
    xc, xo = noisy[:, c:c + 1], noisy[:, o:o + 1]
    both = observed[:, c:c + 1] * observed[:, o:o + 1]  # where both values are observed
    d = (xc - xo) * both
    count, total = sums(both), sums(d)
    # Last resort: the mean difference of the denoiser's own estimates over the largest window, pixel left out.
    last = windows[-1]
    est = estimate[:, c:c + 1] - estimate[:, o:o + 1]
    diff = (sums(est)(last) - at(est)) / neighbours
    for window in reversed(windows):  # the smallest window with an observation gives the difference
        n = count(window)
        diff = torch.where(n > 0.5, total(window) / n.clamp_min(1), diff)
    # Trust the other channel where, over the largest window, the colour difference varies clearly less than
    # the channel to estimate (true of texture and edges that all channels share, false where one of the two
    # is clipped and the other is not), or not at all (one observation, a flat patch), or where nothing is.
    n = count(last).clamp_min(1)
    var_d = sums(d * d)(last) / n - (total(last) / n) ** 2

    def trusted(x: torch.Tensor) -> torch.Tensor:
        var = sums(x * x * both)(last) / n - (sums(x * both)(last) / n) ** 2
        return (var_d < 0.9 * var) | (var_d < 1e-8)

    return {(c, o): (at(xo) + diff, trusted(xc)), (o, c): (at(xc) - diff, trusted(xo))}


def _estimates(noisy: torch.Tensor, estimate: torch.Tensor, observed: torch.Tensor, inside: torch.Tensor,
               windows: tuple[int, ...], sums: Callable, at: Callable) -> torch.Tensor:
    """The re-estimated output: (N, 3, H, W) from whole tensors, or (P, 3, 1, 1) from patches."""
    neighbours = (sums(inside)(windows[-1]) - 1).clamp_min(1)  # the largest window's pixels in the image, less one
    pairs = {}
    for c, o in ((0, 1), (0, 2), (1, 2)):
        pairs |= _pair_estimates(noisy, estimate, observed, neighbours, c, o, windows, sums, at)
    columns = []
    for c in range(3):
        total, weight = 0.0, 0.0
        for o in range(3):
            if o != c:
                value, trusted = pairs[(c, o)]
                use = at(observed[:, o:o + 1]) * trusted.to(value.dtype)
                total, weight = total + use * value, weight + use
        kept = at(estimate[:, c:c + 1])
        repainted = kept != at(noisy[:, c:c + 1])
        columns.append(torch.where(repainted & (weight > 0), (total / weight.clamp_min(1)).clamp(0, 1), kept))
    return torch.cat(columns, dim=1)


def _fill_band(noisy: torch.Tensor, estimate: torch.Tensor, observed: torch.Tensor, todo: torch.Tensor,
               windows: tuple[int, ...], rows: slice) -> torch.Tensor:
    """The output of the band's own rows `rows` (inside the rows its windows read), (N, 3, rows, W)."""
    pixels = todo[:, rows].nonzero(as_tuple=True)  # (image, row, column) of the pixels with work
    if len(pixels[0]) >= SPARSE_SHARE * todo[:, rows].numel():
        inside = torch.ones_like(noisy[:, :1])
        values = _estimates(noisy, estimate, observed, inside, windows, lambda t: _WindowSums(t, windows),
                            lambda t: t)
        return values[:, :, rows]
    r = max(windows) // 2
    at = (pixels[0], pixels[1] + rows.start, pixels[2])  # in the rows of the whole band
    fields = [_Patches.gather(t, at, r) for t in (noisy, estimate, observed, torch.ones_like(noisy[:, :1]))]
    patches = _Patches(r)
    values = _estimates(*fields, windows, patches.sums, patches.at)  # (P, 3, 1, 1)
    out = estimate[:, :, rows].clone()
    out[pixels[0], :, pixels[1], pixels[2]] = values[:, :, 0, 0]
    return out


def _whole_pixels(filled: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    """`filled` (N, 3, H, W) with each pixel where `hit` (N, 1, H, W) is set replaced by the mean of its three
    values plus each channel's 3x3 mean offset from that mean (edges replicated)."""
    mean = filled.mean(dim=1, keepdim=True)
    padded = F.pad(filled - mean, (1, 1, 1, 1), mode="replicate")
    h, w = filled.shape[-2:]
    # A 3x3 box sum as shifted slices, rows then columns: with avg_pool2d instead the whole fill took 39 ms
    # rather than 26 on a 512x512 photo with per-pixel noise, 70 rather than 41 on 500 32x32 crops (profiler).
    rows = padded[..., :h, :] + padded[..., 1:h + 1, :] + padded[..., 2:, :]
    offset = (rows[..., :w] + rows[..., 1:w + 1] + rows[..., 2:]) / 9
    return torch.where(hit, (mean + offset).clamp(0, 1), filled)


def colour_difference_fill(noisy: torch.Tensor, estimate: torch.Tensor, *,
                           windows: tuple[int, ...] = WINDOWS) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1]: `estimate`, a switching denoiser's per-channel output for `noisy`, with each
    value it changed re-estimated from the pixel's unchanged channels, where it has one, and each pixel it
    changed in every channel re-estimated from its three values and its neighbours' colour.

    A switching denoiser keeps every value it takes for clean bit for bit, so a changed value is a repainted
    one, unless it went from one exact extreme to the other, which a rule decided. Only images, and row bands
    of BAND_ROWS, that hold such a value next to an unchanged channel are worked on, and a band where few
    pixels need work (below SPARSE_SHARE: per-pixel noise repaints whole pixels and leaves 1-2% of them)
    takes its window sums at those pixels only. A band reads the rows its windows reach beyond it, so the
    result is the same as in one piece. The whole-pixel step follows, in bands of its own (it reads the first
    step's output one row beyond each).
    """
    if noisy.ndim != 4 or noisy.shape[1] != 3 or estimate.shape != noisy.shape:
        raise ValueError(f"expected two (B, 3, H, W) tensors of one shape, got {tuple(noisy.shape)} "
                         f"and {tuple(estimate.shape)}")
    if not windows or any(w < 1 or w % 2 == 0 for w in windows):
        raise ValueError(f"windows must be odd and positive, got {windows}")
    out = estimate.clone()
    kept = _kept_channel_step(noisy, estimate, out, windows)
    _whole_pixel_step(out, (kept == 0).unsqueeze(1))  # (B, H, W) -> (B, 1, H, W)
    return out


def _observed(noisy: torch.Tensor, estimate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For matching slices of the two: the values the other channels lean on, and where the denoiser kept the
    value (1.0) or repainted it (0.0).

    A repainted value the U-Net held just inside an extreme counts as kept: it was that extreme before
    REPAINT_MARGIN. So does a value turned from one exact extreme to the other: only a rule does that, as for
    an impulse on a line (`denoiser.models.runs`), and its verdict is no estimate to redo, but one to lean on.
    """
    flipped = ((noisy <= 0) & (estimate >= 1)) | ((noisy >= 1) & (estimate <= 0))
    observed = ((estimate - noisy).abs() <= KEPT_TOLERANCE) | flipped
    return torch.where(observed, estimate, noisy), observed.to(noisy.dtype)


def _kept_channel_step(noisy: torch.Tensor, estimate: torch.Tensor, out: torch.Tensor,
                       windows: tuple[int, ...]) -> torch.Tensor:
    """Re-estimate, in `out` (a copy of `estimate`), the repainted values of pixels that kept another channel,
    band by band, and return how many channels each pixel kept, (B, H, W) uint8.

    What was kept is worked out band by band too, on the rows each band reads: as whole-image masks it cost
    120-140 MB more at 2048x2048, and 477 ms of fill where this takes 407 (per-pixel noise at 0.5; README).
    """
    halo, (b, _, h, w) = max(windows) // 2, noisy.shape
    kept = torch.empty(b, h, w, dtype=torch.uint8, device=noisy.device)
    for top in range(0, h, BAND_ROWS):
        bottom = min(h, top + BAND_ROWS)
        lo, hi = max(0, top - halo), min(h, bottom + halo)  # a band reads `halo` rows beyond its own
        own = slice(top - lo, bottom - lo)  # the band's own rows among those
        known, observed = _observed(noisy[:, :, lo:hi], estimate[:, :, lo:hi])
        counts = observed.sum(dim=1)  # (B, rows, W): channels kept per pixel
        kept[:, top:bottom] = counts[:, own]
        todo = (counts > 0) & (counts < 3)
        if (busy := _with_work(todo[:, own])) is None:
            continue
        band = (known[busy], estimate[busy, :, lo:hi], observed[busy])
        out[busy, :, top:bottom] = _fill_band(*band, todo[busy], windows, own)
    return kept


def _whole_pixel_step(out: torch.Tensor, whole: torch.Tensor) -> None:
    """Re-estimate, in place, the pixels of `out` (B, 3, H, W) where `whole` (B, 1, H, W) is set, band by band
    (`_whole_pixels`), each band reading the first step's output one row beyond it."""
    h = out.shape[-2]
    above = None  # the first step's output in the row above this band, which the band above has rewritten
    for top in range(0, h, BAND_ROWS):
        bottom, hi = min(h, top + BAND_ROWS), min(h, top + BAND_ROWS + 1)
        lo = top if above is None else top - 1
        rows = out[:, :, top:hi] if above is None else torch.cat([above, out[:, :, top:hi]], dim=2)
        above = out[:, :, bottom - 1:bottom].clone()
        if (busy := _with_work(whole[:, 0, top:bottom])) is None:
            continue
        band = _whole_pixels(rows[busy], whole[busy, :, lo:hi])
        out[busy, :, top:bottom] = band[:, :, top - lo:bottom - lo]


def _with_work(flags: torch.Tensor) -> torch.Tensor | slice | None:
    """The images whose (B, rows, W) `flags` hold a pixel with work: their indices, every image as a slice
    (a view, not a copy, in the common case of a batch that all needs work), or None."""
    busy = flags.flatten(1).amax(dim=1).nonzero().flatten()
    if len(busy) == 0:
        return None
    return slice(None) if len(busy) == len(flags) else busy
