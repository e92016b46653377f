"""Salt-and-pepper image denoising: the Paperspace article's autoencoder reproduced, and a better default.

Public API: `load_denoiser(source=None).denoise(image)`; see `denoiser.inference`.
"""

from denoiser.inference import ARTICLE_CHECKPOINT, DEFAULT_CHECKPOINT, Denoiser, load_denoiser

__all__ = ["ARTICLE_CHECKPOINT", "DEFAULT_CHECKPOINT", "Denoiser", "load_denoiser"]
