"""What every denoiser in this package is, and where it runs: the `Denoiser` interface and the device rule.

This module is deliberately tiny and imports only torch, numpy and `denoiser.imaging`, so a classic filter
(`denoiser.filters`) can be a `Denoiser` without pulling in checkpoints, models or huggingface_hub.
`select_device` is the one place the package decides between CUDA and the CPU; inference, training, the
benchmark and the command line all ask it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch

from denoiser.imaging import array_to_tensor, tensor_to_array


# Called as progress(done, total) while a long denoising runs (e.g. once per tile), so a UI can show it.
Progress = Callable[[int, int], None]


def select_device(requested: str | torch.device | None = None) -> torch.device:
    """CUDA when present and nothing else was asked for; a clear error for a device that is not there."""
    if requested is None or str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ValueError(f"{requested!r} is not a torch device (try cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} was asked for but no CUDA GPU is available")
    return device


def check_batch(images: object) -> None:
    """The batch contract of `Denoiser.denoise_batch`: a float (B, C, H, W) tensor, not empty."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError("images must be a float (B, C, H, W) tensor in [0, 1]")
    if images.numel() == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(images.shape)}")


class Denoiser(ABC):
    """Anything that removes salt-and-pepper noise: learned models and classic filters alike."""

    name: str = "denoiser"
    device: torch.device = torch.device("cpu")

    def denoise(self, image: np.ndarray, *, progress: Progress | None = None) -> np.ndarray:
        """Denoise one numpy image, uint8 or float in [0, 1], (H, W) or (H, W, 3); same shape and dtype back."""
        x = array_to_tensor(image).unsqueeze(0).to(self.device)  # (C, H, W) -> (1, C, H, W)
        return tensor_to_array(self.denoise_batch(x, progress=progress)[0], like=image)

    @abstractmethod
    def denoise_batch(self, images: torch.Tensor, *, progress: Progress | None = None) -> torch.Tensor:
        """(B, C, H, W) float in [0, 1] -> the same shape in [0, 1], on the input's device.

        `progress(done, total)` is called as the work advances, at least once at the end.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device})"
