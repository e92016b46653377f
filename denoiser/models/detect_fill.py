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

An optional third stage, the **refiner** (`DetectFillConfig.refiner`), cleans up what a switching fill cannot.
JPEG smears every impulse into a halo of ringing across its 8x8 block: values only slightly off, which no cut
can mark without marking half the image, and which a fill that keeps unmarked values leaves in place. The
refiner is a small residual U-Net (the default model's trunk) that reads the input and the pair's output and
adds a correction to every value, trained (`train.py --recipe moved`) with the detector and the filler frozen,
so the two stages keep what they learned. It is the residual stage of the two-stage denoisers for real noise
(detect and fill, then restore; compare DnCNN's residual learning), here only for images whose impulses moved:
the default model sends nothing lossless this way (`denoiser.moved`), so its switching output on lossless
images is untouched. The shipped refiner's first run (12 epochs, 49 CPU minutes) added +2.1 to +2.8 dB on the
validation photos after JPEG at 0.1 and 0.3, quality 75 and 90, and +1.1 to +1.3 dB with near-extreme
impulses; 11 epochs more (31 CPU minutes, `train.py --init-all`) added +0.5 to +0.9 dB and +0.1 to +0.5 dB
(README, Photos). Its price: used alone, this model no longer passes clean values through (a clean photo
comes back at about 41 dB; 42.5 after the first run). A scratch refiner trained on JPEG crops alone, 40 CPU
minutes, reached +4.0 to +4.9 dB on the JPEG rows but lost 1-2 dB on near-extreme impulses and 6 dB on lossless
noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from denoiser.models.base import DenoisingModel, pad_to_multiple, unshuffled_conv
from denoiser.models.impulse import ImpulseConfig, ImpulseUNet
from denoiser.models.unet import UNetConfig, UNetDenoiser, run_trunk, trunk_layers, trunk_levels, trunk_radius


@dataclass
class RefinerConfig:
    widths: tuple[int, ...] = (32, 64, 128)  # the default model's trunk: features at 1/2, 1/4 and 1/8 resolution
    blocks: tuple[int, ...] = (1, 1, 2)  # residual blocks per level

    def __post_init__(self) -> None:
        self.widths, self.blocks = trunk_levels(self.widths, self.blocks)

    @property
    def multiple(self) -> int:
        return 2 ** len(self.widths)


class Refiner(nn.Module):
    """A correction for every value of a colour image, from the input and the pair's output (module docstring)."""

    def __init__(self, config: RefinerConfig) -> None:
        super().__init__()
        self.config, w = config, config.widths
        self.head = nn.Conv2d(2 * 3 * 4, w[0], 3, padding=1)  # (input, pair's output) x 3 colours x 2x2 unshuffle
        self.down_blocks, self.downs, self.ups, self.up_blocks = trunk_layers(w, config.blocks)
        self.tail = nn.Conv2d(w[0], 3 * 4, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # start as the pair alone and learn the correction
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        h = unshuffled_conv(self.head, torch.cat([x, base], dim=1))  # (N, 6, H, W) -> (N, w0, H/2, W/2)
        return base + F.pixel_shuffle(self.tail(run_trunk(self, h)), 2)  # (N, 12, H/2, W/2) -> (N, 3, H, W)


@dataclass
class DetectFillConfig:
    detector: dict = field(default_factory=dict)  # ImpulseConfig fields of the detecting network (colour)
    filler: dict = field(default_factory=dict)  # UNetConfig fields of the repainting network (grayscale)
    exact_threshold: float = -2.0  # a value at exactly 0 or 1 is kept only when its logit is below this
    other_threshold: float = 0.0  # any other value is repainted when its logit is above this
    refiner: dict | None = None  # RefinerConfig fields of the third stage; None: detect and fill only

    def __post_init__(self) -> None:
        # Stored complete, so config.json shows every setting and round-trips to an equal config.
        self.detector = asdict(ImpulseConfig(**self.detector))
        self.filler = asdict(UNetConfig(**self.filler))
        if self.refiner is not None:
            self.refiner = asdict(RefinerConfig(**self.refiner))
        if ImpulseConfig(**self.detector).in_channels != 3 or UNetConfig(**self.filler).in_channels != 1:
            raise ValueError("the detector must take 3 channels and the filler 1")

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def multiple(self) -> int:
        stages = [ImpulseConfig(**self.detector), UNetConfig(**self.filler)]
        stages += [RefinerConfig(**self.refiner)] if self.refiner is not None else []
        return max(stage.multiple for stage in stages)


class DetectFill(DenoisingModel):
    architecture = "detect_fill"
    pad_mode = ImpulseUNet.pad_mode  # the detector's reason for reflecting holds here too
    # `train.py --init-from` never copies these: a refiner learns the residual of the pair under it, so one
    # trained on another pair is no start, and a rerun of the refiner's recipe must not build on the last run.
    fresh_on_init = ("refiner.",)

    def __init__(self, config: DetectFillConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DetectFillConfig()
        self.detector = ImpulseUNet(ImpulseConfig(**config.detector))
        self.filler = UNetDenoiser(UNetConfig(**config.filler))
        self.refiner = Refiner(RefinerConfig(**config.refiner)) if config.refiner is not None else None
        if self.refiner is not None:
            # Only the refiner trains; the detector and the filler stay what their own recipes made them.
            self.detector.requires_grad_(False)
            self.filler.requires_grad_(False)

    @classmethod
    def assemble(cls, detector: ImpulseUNet, filler: UNetDenoiser, *, refiner: Refiner | None = None,
                 **thresholds: float) -> "DetectFill":
        """The pair built from two trained networks (their weights copied), with the given thresholds, and the
        given refiner's weights as its third stage (trained on another pair's output, so best retrained)."""
        config = DetectFillConfig(detector=asdict(detector.config), filler=asdict(filler.config), **thresholds,
                                  refiner=None if refiner is None else asdict(refiner.config))
        model = cls(config)
        model.detector.load_state_dict(detector.state_dict())
        model.filler.load_state_dict(filler.state_dict())
        if refiner is not None:
            model.refiner.load_state_dict(refiner.state_dict())
        return model

    def train(self, mode: bool = True) -> "DetectFill":
        """Train mode reaches the refiner alone: the frozen stages keep computing as they do at inference."""
        super().train(mode)
        self.detector.eval()
        self.filler.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Any (B, 3, H, W) or (B, 1, H, W): padded, run, cropped. Only a pair with a refiner trains, the refiner
        alone; the detector and the filler train on their own."""
        if self.training and self.refiner is None:
            raise ValueError("DetectFill is assembled from a trained impulse U-Net and a trained default model "
                             "(DetectFill.assemble); train those instead, or give it a refiner to train")
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
        base = self.filler_pass(x, self.impulses(x))  # no graph in training: nothing before the refiner learns
        return base if self.refiner is None else self.refiner(x, base)

    def impulses(self, x: torch.Tensor) -> torch.Tensor:
        """The detector's mask (float 0/1, shaped like x), cut as the module docstring says."""
        logits, _ = self.detector.detect_and_fill(x)
        exact = (x <= 0) | (x >= 1)
        cut = torch.where(exact, torch.full_like(logits, self.config.exact_threshold),
                          torch.full_like(logits, self.config.other_threshold))
        return (logits > cut).to(x.dtype)

    def filler_pass(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The grayscale filler on each colour channel in turn. One channel at a time, not the three folded into
        the batch: the same values, at half the peak memory (a 976x976 tile on PyTorch: 356 MB above the
        model's own against 709 MB), which bounds the memory of a 4-megapixel photo."""
        return torch.cat([self.filler.fill(x[:, i:i + 1], mask[:, i:i + 1]) for i in range(x.shape[1])], dim=1)

    @property
    def receptive_radius(self) -> int:
        """An upper bound: the filler reaches its fill's radius around a pixel (its own mask rule is not used
        here), and each mask value it reads the detector's radius further."""
        pair = self.detector.receptive_radius + self.filler.fill_radius
        # The refiner reads the input and the pair's output, each value of which reaches `pair` further.
        return pair + (trunk_radius(self.refiner.config.blocks) if self.refiner is not None else 0)
