"""Denoising networks: the article's autoencoder and the default switching U-Net."""

from denoiser.models.article import ArticleAutoencoder, ArticleConfig
from denoiser.models.base import DenoisingModel
from denoiser.models.unet import UNetConfig, UNetDenoiser

__all__ = ["ArticleAutoencoder", "ArticleConfig", "DenoisingModel", "UNetConfig", "UNetDenoiser"]
