"""Image quality metrics, one value per image: PSNR and SSIM.

PSNR is the textbook 10 * log10(data_range^2 / MSE). SSIM is Wang et al. (2004), "Image quality
assessment: from error visibility to structural similarity", taken from torchmetrics rather than
re-implemented, so our figures match what others compute with the same well-kept library.
"""

from __future__ import annotations

import torch

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
