"""The convolutional autoencoder of Paperspace's "Denoising Autoencoders" article, reproduced exactly.

Encoder: 6 conv layers (two at 32x32, two at 16x16, two at 8x8; stride-2 convs downsample), flatten,
Linear to a 1000-d bottleneck, ReLU. Decoder: Linear back to 64x8x8, then 6 transposed convs up to
32x32, ReLU between all layers and no activation at the end. Conv2d and Linear layers get Xavier-uniform
weights and bias 0.01, as the article's `init_weights` does (its transposed convs keep PyTorch's default
init, because that function matches only `nn.Conv2d` and `nn.Linear`). The grayscale model has
8,340,617 parameters.

The article feeds images normalized to mean 0.5 and std 0.5, i.e. [-1, 1]. To keep one convention across
the package, `forward` takes and returns [0, 1] images and does that mapping inside; the network sees
exactly the article's numbers. The training loss, computed on [0, 1], is the article's loss divided by 4,
which Adam's updates do not depend on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from denoiser.models.base import DenoisingModel


@dataclass
class ArticleConfig:
    in_channels: int = 1  # the article trains on grayscale (channel mean) images
    channels: int = 16  # width of the first conv; doubles at 16x16 and again at 8x8, as in the article
    latent_dim: int = 1000  # the bottleneck size the article chose
    image_size: int = 32  # CIFAR-10; the flatten/linear layers fix the input size

    def __post_init__(self) -> None:
        if self.image_size % 4:
            raise ValueError("image_size must be a multiple of 4 (two stride-2 downsamplings)")


def _init_like_article(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        module.bias.data.fill_(0.01)


class ArticleAutoencoder(DenoisingModel):
    architecture = "article"

    def __init__(self, config: ArticleConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ArticleConfig()
        c, c_in, side = config.channels, config.in_channels, config.image_size // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * c, 4 * c, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(4 * c, 4 * c, 3, padding=1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * c * side * side, config.latent_dim), nn.ReLU(),
        )
        self.decoder_linear = nn.Sequential(nn.Linear(config.latent_dim, 4 * c * side * side), nn.ReLU())
        self.decoder_conv = nn.Sequential(
            nn.ConvTranspose2d(4 * c, 4 * c, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(4 * c, 2 * c, 3, padding=1, stride=2, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 3, padding=1, stride=2, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c, c, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c, c_in, 3, padding=1),
        )
        self.apply(_init_like_article)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images (B, C, S, S) -> bottleneck codes (B, latent_dim)."""
        return self.encoder((x - 0.5) / 0.5)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bottleneck codes (B, latent_dim) -> images (B, C, S, S), about [0, 1] (unclamped)."""
        c, side = self.config.channels, self.config.image_size // 4
        h = self.decoder_linear(z).view(-1, 4 * c, side, side)  # (B, 4c*side*side) -> (B, 4c, side, side)
        return self.decoder_conv(h) * 0.5 + 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.image_size
        if x.shape[-3:] != (self.config.in_channels, s, s):
            raise ValueError(f"the article model takes ({self.config.in_channels}, {s}, {s}) images, "
                             f"got {tuple(x.shape[-3:])}")
        return self.decode(self.encode(x))
