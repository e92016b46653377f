"""Classic salt-and-pepper filters, the baselines our models are measured against.

* `median_filter`: the plain k x k median.
* `adaptive_median_filter`: Hwang & Haddad (1995), "Adaptive median filters: new algorithms and results",
  IEEE Trans. Image Processing 4(4). Stage A grows the window (3, 5, 7, ...) until min < median < max,
  so the median is not itself an impulse; stage B then keeps the pixel if min < pixel < max and replaces
  it with the median otherwise. So only pixels equal to their window's min or max are ever replaced.
  When no window up to `max_window` passes stage A, the pixel gets the largest window's median.

Both are vectorized torch code on any device: every window is a zero-copy strided view of the padded
image (`Tensor.unfold`), reduced with torch's median / aminmax. Work runs in row bands, so memory stays
bounded on multi-megapixel photos. Borders are mirror-padded (torch's "reflect": the edge pixel is not
repeated, so an impulse on the edge is not duplicated into its own window); images with a side too
short to mirror fall back to replicate padding.

The `Denoiser` wrappers let the benchmark and the app run these filters like any model; colour images
are filtered per channel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from denoiser.interface import Denoiser, Progress

# Window values held at once (64 MiB as float32; the adaptive filter's int64 gather indices take twice that),
# so that multi-megapixel photos run in row bands instead of exhausting memory.
_CHUNK_VALUES = 1 << 24


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("images must be a (B, C, H, W) tensor")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got {images.dtype}")
    if images.numel() == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(images.shape)}")


def _check_window(size: int, *, name: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 3 or size % 2 == 0:
        raise ValueError(f"{name} must be an odd integer >= 3, got {size!r}")


def _pad(planes: torch.Tensor, pad: int) -> torch.Tensor:
    """(N, H, W) -> (N, H + 2 pad, W + 2 pad), mirrored where the image is big enough, else replicated."""
    mode = "reflect" if min(planes.shape[-2:]) > pad else "replicate"
    return F.pad(planes.unsqueeze(1), (pad, pad, pad, pad), mode=mode).squeeze(1)  # via (N, 1, H, W)


def _windows(padded: torch.Tensor, *, size: int, pad: int) -> torch.Tensor:
    """Zero-copy view (N, H, W, size, size) of every size x size window of an image padded by `pad`."""
    margin = pad - size // 2  # a smaller window sits inside the larger padding
    inner = padded[:, margin:padded.shape[1] - margin, margin:padded.shape[2] - margin]
    return inner.unfold(1, size, 1).unfold(2, size, 1)  # (N, Hp, Wp) -> (N, H, W, size, size)


def _by_row_bands(planes: torch.Tensor, *, pad: int, values_per_pixel: int,
                  band_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply `band_fn(padded_band) -> (N, rows, W)` to bands of output rows sized to the memory budget."""
    n, h, w = planes.shape
    padded = _pad(planes, pad)
    out = torch.empty_like(planes)
    rows = max(1, _CHUNK_VALUES // (n * w * values_per_pixel))
    for top in range(0, h, rows):
        bottom = min(h, top + rows)
        out[:, top:bottom] = band_fn(padded[:, top:bottom + 2 * pad])  # a band keeps its 2*pad context rows
    return out


def median_filter(images: torch.Tensor, *, size: int) -> torch.Tensor:
    """size x size median of every channel of (B, C, H, W) images; same shape back."""
    _check_images(images)
    _check_window(size, name="size")
    b, c, h, w = images.shape

    def band_median(band: torch.Tensor) -> torch.Tensor:
        windows = _windows(band, size=size, pad=size // 2)  # (N, rows, W, size, size)
        return windows.reshape(*windows.shape[:3], size * size).median(dim=-1).values

    planes = images.reshape(b * c, h, w)  # (B, C, H, W) -> (B*C, H, W)
    out = _by_row_bands(planes, pad=size // 2, values_per_pixel=size * size, band_fn=band_median)
    return out.reshape(b, c, h, w)  # (B*C, H, W) -> (B, C, H, W)


def _window_values(band: torch.Tensor, pixels: torch.Tensor, *, size: int, pad: int) -> torch.Tensor:
    """The size x size windows (M, size*size) around `pixels`, flat indices into the band's (N, H, W) centre."""
    n, hp, wp = band.shape
    h, w = hp - 2 * pad, wp - 2 * pad
    if pixels.numel() > n * h * w // 2:  # most pixels: copying every window and picking rows is cheaper
        return _windows(band, size=size, pad=pad).reshape(-1, size * size)[pixels]  # (N*H*W, size*size) -> (M, ...)
    plane, y, x = pixels // (h * w), pixels // w % h, pixels % w
    centre = plane * (hp * wp) + (y + pad) * wp + (x + pad)  # the same pixels, as flat indices into the band
    r = torch.arange(-(size // 2), size // 2 + 1, device=band.device)
    offsets = (r.view(-1, 1) * wp + r.view(1, -1)).reshape(-1)  # (size, size) -> (size*size,)
    return band.reshape(-1)[centre.view(-1, 1) + offsets]  # (M, size*size)


def _adaptive_band(band: torch.Tensor, *, max_window: int) -> torch.Tensor:
    """Adaptive median of the centre of one padded band (N, rows + 2 pad, W + 2 pad) -> (N, rows, W)."""
    pad = max_window // 2
    n, hp, wp = band.shape
    planes = band[:, pad:hp - pad, pad:wp - pad]
    z_all = planes.reshape(-1)  # (N, H, W) -> (N*H*W,)
    out = z_all.clone()
    # Each stage looks only at the pixels the smaller windows left undecided, so at low noise the big
    # windows touch few pixels.
    pixels = torch.arange(z_all.numel(), device=band.device)
    for size in range(3, max_window + 1, 2):
        values = _window_values(band, pixels, size=size, pad=pad)
        z_min, z_max = values.aminmax(dim=1)
        z_med = values.median(dim=1).values
        z = z_all[pixels]
        median_ok = (z_min < z_med) & (z_med < z_max)  # stage A
        keep = (z_min < z) & (z < z_max)  # stage B: the pixel is no extreme of its window
        done = median_ok | (size == max_window)
        out[pixels[done]] = torch.where(median_ok & keep, z, z_med)[done]
        pixels = pixels[~done]
        if pixels.numel() == 0:
            break
    return out.view(planes.shape)


def adaptive_median_filter(images: torch.Tensor, *, max_window: int = 7) -> torch.Tensor:
    """Hwang-Haddad adaptive median (windows 3, 5, ..., max_window) of every channel; same shape back."""
    _check_images(images)
    _check_window(max_window, name="max_window")
    b, c, h, w = images.shape
    planes = images.reshape(b * c, h, w)  # (B, C, H, W) -> (B*C, H, W)
    out = _by_row_bands(planes, pad=max_window // 2, values_per_pixel=max_window**2,
                        band_fn=lambda band: _adaptive_band(band, max_window=max_window))
    return out.reshape(b, c, h, w)  # (B*C, H, W) -> (B, C, H, W)


class MedianDenoiser(Denoiser):
    """The plain size x size median filter, per channel."""

    def __init__(self, *, size: int = 3, device: str | torch.device = "cpu") -> None:
        _check_window(size, name="size")
        self.size = size
        self.name = f"{size}×{size} median"
        self.device = torch.device(device)

    def denoise_batch(self, images: torch.Tensor, *, progress: Progress | None = None) -> torch.Tensor:
        out = median_filter(images, size=self.size)
        if progress:
            progress(1, 1)
        return out


class AdaptiveMedianDenoiser(Denoiser):
    """The Hwang-Haddad adaptive median filter, per channel."""

    def __init__(self, *, max_window: int = 7, device: str | torch.device = "cpu") -> None:
        _check_window(max_window, name="max_window")
        self.max_window = max_window
        self.name = "Adaptive median"
        self.device = torch.device(device)

    def denoise_batch(self, images: torch.Tensor, *, progress: Progress | None = None) -> torch.Tensor:
        out = adaptive_median_filter(images, max_window=self.max_window)
        if progress:
            progress(1, 1)
        return out
