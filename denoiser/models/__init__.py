"""Denoising networks: the article's autoencoder, the default switching U-Net, and the impulse U-Net."""

from denoiser.models.article import ArticleAutoencoder, ArticleConfig
from denoiser.models.base import DenoisingModel
from denoiser.models.impulse import ImpulseConfig, ImpulseUNet
from denoiser.models.unet import UNetConfig, UNetDenoiser

__all__ = ["ArticleAutoencoder", "ArticleConfig", "DenoisingModel", "ImpulseConfig", "ImpulseUNet", "UNetConfig",
           "UNetDenoiser"]
