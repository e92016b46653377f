"""Image quality metrics, one value per image: PSNR and SSIM.

PSNR is the textbook 10 * log10(data_range^2 / MSE). SSIM is Wang et al. (2004), "Image quality
assessment: from error visibility to structural similarity", taken from torchmetrics rather than
re-implemented, so our figures match what others compute with the same well-kept library.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# PSNR of two identical images is infinite; an infinite value poisons every mean it enters, so the MSE is
# floored at 1e-10 * data_range^2, which caps PSNR at 100 dB (far above anything a denoiser reaches).
MAX_PSNR_DB = 100.0

# torchmetrics reflect-pads by half its 11x11 window before filtering, which needs a side of at least 6.
_SSIM_MIN_SIDE = 6


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4:
            raise ValueError(f"{name} must be a (B, C, H, W) tensor")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be float in [0, 1], got {t.dtype}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, shape (B,), over all channels and pixels; capped at MAX_PSNR_DB for identical images."""
    _check_pair(pred, target)
    if data_range <= 0:
        raise ValueError("data_range must be positive")
    # float64 so that tiny errors on big images are not lost to float32 rounding.
    mse = (pred.double() - target.double()).pow(2).mean(dim=(1, 2, 3))
    floor = data_range**2 * 10 ** (-MAX_PSNR_DB / 10)
    return (10 * torch.log10(data_range**2 / mse.clamp_min(floor))).float()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM, shape (B,): the mean of the SSIM map over channels and pixels.

    The map is torchmetrics' `structural_similarity_index_measure` with its defaults (Gaussian window
    11x11, sigma 1.5, k1=0.01, k2=0.03, reflect-padded borders) and `data_range=1.0`. The figures equal
    its `reduction='none'` output exactly; we only fold the batch into channels first, because torchmetrics
    filters channels independently and one depthwise convolution over many channels runs about 3x
    faster on a CPU than a one-channel convolution over many images.
    """
    _check_pair(pred, target)
    if min(pred.shape[-2:]) < _SSIM_MIN_SIDE:
        raise ValueError(f"SSIM needs images of at least {_SSIM_MIN_SIDE}x{_SSIM_MIN_SIDE}, "
                         f"got {tuple(pred.shape[-2:])}")
    # Imported here: torchmetrics pulls in torchvision and adds seconds to every `import denoiser.metrics`,
    # where most callers (the app, training between epochs) want only PSNR.
    from torchmetrics.functional.image import structural_similarity_index_measure

    b = pred.shape[0]
    folded = [t.reshape(1, -1, *t.shape[-2:]) for t in (pred, target)]  # (B, C, H, W) -> (1, B*C, H, W)
    _, ssim_map = structural_similarity_index_measure(*folded, data_range=1.0, return_full_image=True)
    return ssim_map.reshape(b, -1).mean(dim=1)  # (1, B*C, H, W) -> (B, C*H*W) -> (B,)


def psnr_ssim_in_bands(pred: torch.Tensor, target: torch.Tensor, *, band_rows: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (PSNR, SSIM), shapes (B,): the figures of `psnr` and `ssim`, for multi-megapixel images.

    Worked through bands of `band_rows` rows, each read with the 5 rows of context the 11x11 window needs,
    so memory stays near one band's worth. torchmetrics' 11x11 Gaussian kernel is the outer product of two
    1-D kernels, so it runs as two 11-tap passes in channels_last layout (the fast depthwise convolution of
    oneDNN): a 4-megapixel colour pair takes a fraction of a second instead of seconds and gigabytes. The
    SSIM equals `ssim` to float rounding (tests/test_metrics.py checks 1e-5); PSNR equals `psnr`.
    """
    _check_pair(pred, target)
    if min(pred.shape[-2:]) < _SSIM_MIN_SIDE:
        raise ValueError(f"SSIM needs images of at least {_SSIM_MIN_SIDE}x{_SSIM_MIN_SIDE}, "
                         f"got {tuple(pred.shape[-2:])}")
    b, c, h, w = pred.shape
    radius, sigma, c1, c2 = 5, 1.5, 0.01**2, 0.03**2  # torchmetrics' defaults at data_range 1
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    gauss = torch.exp(-((offsets / sigma) ** 2) / 2)
    gauss = (gauss / gauss.sum()).to(pred.device)
    n = b * c
    across = gauss.view(1, 1, 1, -1).repeat(n, 1, 1, 1)  # (11,) -> (B*C, 1, 1, 11)
    down = gauss.view(1, 1, -1, 1).repeat(n, 1, 1, 1)  # (11,) -> (B*C, 1, 11, 1)
    squared_error = torch.zeros(n, dtype=torch.float64, device=pred.device)
    ssim_sum = torch.zeros(n, dtype=torch.float64, device=pred.device)
    for top in range(0, h, band_rows):
        bottom = min(top + band_rows, h)
        lo, hi = max(0, top - radius), min(h, bottom + radius)
        # Reflection only at the image's own edges, as torchmetrics pads the whole image; elsewhere real rows.
        pad = (radius, radius, radius - (top - lo), radius - (hi - bottom))
        p, t = (F.pad(x[..., lo:hi, :].reshape(1, n, hi - lo, w).float(), pad, mode="reflect")[0]
                for x in (pred, target))  # (B, C, rows, W) -> (1, B*C, rows, W) -> padded (B*C, rows+, W+)
        own = (slice(None), slice(top - lo + pad[2], bottom - lo + pad[2]), slice(radius, radius + w))
        squared_error += (p[own] - t[own]).square().sum(dim=(1, 2), dtype=torch.float64)
        # The five local statistics as a batch of 5 (B*C)-channel images, depthwise-filtered in one call each
        # way; the SSIM formula then runs in place on the filtered band (fresh tensors cost more than the math).
        stats = torch.empty((5, *p.shape), dtype=p.dtype, device=p.device, memory_format=torch.channels_last)
        stats[0], stats[1] = p, t
        torch.mul(p, p, out=stats[2])
        torch.mul(t, t, out=stats[3])
        torch.mul(p, t, out=stats[4])
        mu_p, mu_t, var_p, var_t, cov = F.conv2d(F.conv2d(stats, across, groups=n), down, groups=n)
        mu_pt = mu_p * mu_t
        mu_p.square_()
        mu_t.square_()
        var_p.sub_(mu_p).clamp_min_(0.0)
        var_t.sub_(mu_t).clamp_min_(0.0)
        cov.sub_(mu_pt).mul_(2).add_(c2)  # 2 * covariance + c2
        numerator = mu_pt.mul_(2).add_(c1).mul_(cov)
        denominator = mu_p.add_(mu_t).add_(c1).mul_(var_p.add_(var_t).add_(c2))
        ssim_sum += numerator.div_(denominator).sum(dim=(1, 2), dtype=torch.float64)
    per_image = c * h * w
    mse = squared_error.view(b, c).sum(dim=1) / per_image  # (B*C,) -> (B, C) -> (B,)
    psnr_db = 10 * torch.log10(1.0 / mse.clamp_min(10 ** (-MAX_PSNR_DB / 10)))
    return psnr_db.float(), (ssim_sum.view(b, c).sum(dim=1) / per_image).float()  # (B*C,) -> (B, C) -> (B,)
