"""Denoising networks: the article's autoencoder, the default switching U-Net, the impulse U-Net, and the pair
that detects with the impulse U-Net and fills with the default one."""

from denoiser.models.article import ArticleAutoencoder, ArticleConfig
from denoiser.models.base import DenoisingModel
from denoiser.models.detect_fill import DetectFill, DetectFillConfig
from denoiser.models.impulse import ImpulseConfig, ImpulseUNet
from denoiser.models.unet import UNetConfig, UNetDenoiser

__all__ = ["ArticleAutoencoder", "ArticleConfig", "DenoisingModel", "DetectFill", "DetectFillConfig", "ImpulseConfig",
           "ImpulseUNet", "UNetConfig", "UNetDenoiser"]
