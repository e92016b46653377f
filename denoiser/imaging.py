"""Conversions between user-facing numpy images and the package's float tensors.

Everything inside `denoiser` works on float tensors in [0, 1] shaped (C, H, W) or (B, C, H, W).
Users hand us numpy arrays (uint8 or float, grayscale or RGB); these named helpers are the only place
where that conversion happens, so dtype and range rules live in one spot.
"""

from __future__ import annotations

import numpy as np
import torch


def _check_array(image: object) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected an image shaped (H, W) or (H, W, 3), got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"the image must be at least 2x2 pixels, got {image.shape[1]}x{image.shape[0]}")
    if image.dtype == np.uint8:
        return image
    if image.dtype not in (np.float32, np.float64):
        raise ValueError(f"expected uint8 or float32 pixels, got {image.dtype}")
    if not np.isfinite(image).all():
        raise ValueError("the image contains NaN or infinite values")
    if image.min() < 0.0 or image.max() > 1.0:
        raise ValueError("float images must have values in [0, 1]")
    return image


def array_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, 3) uint8 / float array -> (C, H, W) float32 tensor in [0, 1]."""
    image = _check_array(image)
    # A fresh float32 copy: read-only inputs (np.asarray of a PIL image) cannot be shared with torch.
    t = torch.from_numpy(np.array(image, dtype=np.float32, order="C"))
    if image.dtype == np.uint8:
        t /= 255.0
    if t.ndim == 2:
        return t.unsqueeze(0)  # (H, W) -> (1, H, W)
    return t.permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)


def tensor_to_array(t: torch.Tensor, *, like: np.ndarray) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] -> array with the shape and dtype of `like`."""
    t = t.detach().float().clamp(0.0, 1.0).cpu()
    t = t[0] if like.ndim == 2 else t.permute(1, 2, 0)  # (C, H, W) -> (H, W) or (H, W, C)
    out = t.numpy()
    if like.dtype == np.uint8:
        return (out * 255.0 + 0.5).astype(np.uint8)
    return out.astype(like.dtype)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float tensor in [0, 1], any shape -> uint8 of the same shape, rounded to the nearest level."""
    return (images.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 tensor, any shape -> float32 in [0, 1]."""
    return images.float() / 255.0


def array_view(image: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, 3) float32 array in [0, 1] -> a (1, C, H, W) tensor sharing its memory, no copy.

    For read-only consumers of big images (metrics): strided, not contiguous, and writes would reach the array.
    """
    if image.dtype != np.float32 or image.ndim not in (2, 3):
        raise ValueError(f"expected a float32 (H, W) or (H, W, 3) array, got {image.dtype} {image.shape}")
    t = torch.from_numpy(image)
    t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)  # (H, W) -> (1, H, W); (H, W, 3) -> (3, H, W)
    return t.unsqueeze(0)  # (C, H, W) -> (1, C, H, W)
