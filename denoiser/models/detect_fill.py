"""Detect, then fill: the impulse U-Net's learned detector decides which values are impulses, and the
default model's U-Net repaints them.

The two networks are each good at one half of the job. The impulse U-Net (`denoiser.models.impulse`)
learned from photos, JPEG files and synthetic structure which values are noise, including impulses that
compression or resizing moved off pure black and white, and which black and white values are genuine
detail; but its own replacement values are 2-4 dB behind the default model's on lossless noise (a
CIFAR-10-only fine-tune converged near 28.2 dB at amount 0.5 where the default model gets 29.8, while
its detector cost only 0.15 dB against the true mask). The default model (`denoiser.models.unet`) finds
impulses by a hand-set rule, "exactly 0 or 1 outside clipped regions", but its U-Net repaints whatever
mask it is given (`UNetDenoiser.fill`). So this model runs the detector on the colour image in one pass,
then the default model's U-Net channel by channel with the detector's mask, no weight retrained: a
two-stage impulse denoiser in the manner of the switching filters (detect, then restore only what was
detected), with both stages learned.

The mask uses two cuts on the detector's logits. A value at exactly 0 or 1 is repainted unless the detector is
sure it is genuine (logit below `exact_threshold`, -2 by default): such values are impulses far more often
than not, and a missed impulse costs far more than a clean value repainted with about itself. (Of -1, -1.5,
-2, -3 and -5, measured on 8 validation photos, the structure set and 1,000 CIFAR-10 test images, -2 lost
nothing to -3 anywhere and kept 95.1% of the structure images' pixels identical against 91.7%; -1 kept 96.8%
but lost 0.05 dB on CIFAR-10 at amount 0.9.) Any other value is repainted when the detector's logit is above
`other_threshold`, 0 by default, the detector's own even-odds cut, which is what finds the impulses JPEG and
resizing moved. On lossless noise every such flag is a false alarm, and they cost 0.4-0.6 dB against the
default model (CIFAR-10 at amount 0.1, 8 validation photos at 0.3 and 0.5); a cut of 2 removes most of that
cost (within 0.12 dB of the default model on both; CIFAR-10 on 1,000 test images at 0.1, 0.5 and 0.9) but
gives up most of the gain on JPEG files (0.3 then JPEG q75: 21.2 dB against 23.8 dB on the 8 photos; both with
-3 for exact values). Both cuts live in the config, so a checkpoint can change them without retraining.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from denoiser.models.base import DenoisingModel, pad_to_multiple
from denoiser.models.impulse import ImpulseConfig, ImpulseUNet
from denoiser.models.unet import UNetConfig, UNetDenoiser


@dataclass
class DetectFillConfig:
    detector: dict = field(default_factory=dict)  # ImpulseConfig fields of the detecting network (colour)
    filler: dict = field(default_factory=dict)  # UNetConfig fields of the repainting network (grayscale)
    exact_threshold: float = -2.0  # a value at exactly 0 or 1 is kept only when its logit is below this
    other_threshold: float = 0.0  # any other value is repainted when its logit is above this

    def __post_init__(self) -> None:
        # Stored complete, so config.json shows every setting and round-trips to an equal config.
        self.detector = asdict(ImpulseConfig(**self.detector))
        self.filler = asdict(UNetConfig(**self.filler))
        if ImpulseConfig(**self.detector).in_channels != 3 or UNetConfig(**self.filler).in_channels != 1:
            raise ValueError("the detector must take 3 channels and the filler 1")

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def multiple(self) -> int:
        return max(ImpulseConfig(**self.detector).multiple, UNetConfig(**self.filler).multiple)


class DetectFill(DenoisingModel):
    architecture = "detect_fill"
    pad_mode = ImpulseUNet.pad_mode  # the detector's reason for reflecting holds here too

    def __init__(self, config: DetectFillConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DetectFillConfig()
        self.detector = ImpulseUNet(ImpulseConfig(**config.detector))
        self.filler = UNetDenoiser(UNetConfig(**config.filler))

    @classmethod
    def assemble(cls, detector: ImpulseUNet, filler: UNetDenoiser, **thresholds: float) -> "DetectFill":
        """The pair built from two trained networks (their weights copied), with the given thresholds."""
        model = cls(DetectFillConfig(detector=asdict(detector.config), filler=asdict(filler.config), **thresholds))
        model.detector.load_state_dict(detector.state_dict())
        model.filler.load_state_dict(filler.state_dict())
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Any (B, 3, H, W) or (B, 1, H, W) in eval mode: padded, run, cropped. Its parts train on their own."""
        if self.training:
            raise ValueError("DetectFill is assembled from a trained impulse U-Net and a trained default model "
                             "(DetectFill.assemble); train those instead")
        b, c, h, w = x.shape
        if c == 1:
            # A gray image is a colour image whose channels agree; its three answers are averaged back.
            return self(x.expand(b, 3, h, w)).mean(dim=1, keepdim=True)
        if c != 3:
            raise ValueError(f"this model takes 3 channels (or 1), got {c}")
        padded = pad_to_multiple(x, self.config.multiple, mode=self.pad_mode)
        return self.forward_padded(padded)[..., :h, :w]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The exportable core: (N, 3, H, W), H and W multiples of `config.multiple`."""
        return self.filler_pass(x, self.impulses(x))

    def impulses(self, x: torch.Tensor) -> torch.Tensor:
        """The detector's mask (float 0/1, shaped like x), cut as the module docstring says."""
        logits, _ = self.detector.detect_and_fill(x)
        exact = (x <= 0) | (x >= 1)
        cut = torch.where(exact, torch.full_like(logits, self.config.exact_threshold),
                          torch.full_like(logits, self.config.other_threshold))
        return (logits > cut).to(x.dtype)

    def filler_pass(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        folded = self.filler.fill(x.reshape(n * c, 1, h, w), mask.reshape(n * c, 1, h, w))  # (N, 3, H, W) -> (3N, 1, H, W)
        return folded.reshape(n, c, h, w)  # (3N, 1, H, W) -> (N, 3, H, W)

    @property
    def receptive_radius(self) -> int:
        """An upper bound: the filler reaches its own radius around a pixel (less the window of its own
        mask rule, which it does not use here), and each mask value it reads the detector's radius further."""
        own_rule = self.filler.config.saturation_window // 2
        return self.detector.receptive_radius + self.filler.receptive_radius - own_rule
