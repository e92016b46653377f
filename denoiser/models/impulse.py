"""The impulse U-Net: a colour network that learns which pixels are impulses and repaints only those.

It replaces the default model's hand-set rule ("exactly 0 or 1, unless inside a clipped region") with a
learned detector, because real noisy files break that rule: JPEG and resizing move impulses off the
extremes and leave halos around them, while photos hold genuine black and white detail (one-pixel lines,
text, stars, clipped highlights) that the rule repaints.

Why this design, piece by piece:

* **A detection output trained jointly with the restoration** (as the two-stage impulse-noise networks do,
  e.g. the detector + inpainting CNNs of Jin et al. and Zhang et al.'s switching designs). The tail
  predicts, for every pixel and channel, a logit "this value is corrupted" and a replacement value. We
  chose an explicit detection output over a soft mask the network refines, because an explicit mask can be
  supervised directly (binary cross-entropy against the pixels the degradation really changed), thresholded
  at inference, and shown to users; a refined soft mask would blend every pixel a little and lose the
  switching property below.
* **Switching output.** At inference a pixel whose logit is below 0 passes through bit-exactly, so on
  lossless inputs nothing clean is blurred and a clean photo comes back almost unchanged.
* **Two-stage training in one network.** The replacement values learn from the image loss of the output
  made with the *true* corruption mask (teacher forcing, `compose_with_mask`; the values also on the pixels
  the detector flags, so that a false alarm repaints a clean pixel with about its own value). The detector
  learns from binary cross-entropy, plus the image loss of the output made with its own soft mask and the
  values held fixed (`TrainConfig.soft_mask_weight`): cross-entropy alone counts a missed impulse the same
  as a false alarm and left the even-odds cut badly placed (a 250-step fine-tune with the term gave 29.5 dB
  at amount 0.3 on validation photos, one without it 23.8 dB). Trained end to end through a hard mask (a
  straight-through estimator) the detector chased the errors of still-poor replacement values, and the
  first epochs flagged most clean pixels as noise.
* **What counts as corrupted** is learned from the degradation, not from pixel values: the detection target
  is "differs from the clean image by more than `DETECT_TOLERANCE`", which after JPEG includes the ringing
  halo around each impulse and after resizing the smeared impulse, and excludes clean pixels that happen to
  be 0 or 1.
* **Colour jointly.** Three channels in, three out, in one pass: an impulse in one channel is repaired from
  the two intact channels of the same pixel, and a colour photo costs one network pass instead of three.
  Per-pixel and per-channel impulses are the same task to it. Grayscale images run through the same network
  with the gray channel repeated three times (done by the runner), which is exactly a per-pixel colour case.
* The backbone is the default model's (U-Net with additive skips, Ronneberger et al. 2015; FFDNet's pixel
  unshuffle so no convolution runs at full resolution, Zhang et al. 2018), and the replacement value is
  learned as a residual (DnCNN's residual learning, Zhang et al. 2017) over the mean of the 5x5
  neighbours weighted by how far each is from an extreme: the default model's masked-mean first guess, made
  soft so that it needs no hand-set mask. With a plain 3x3 mean instead, which impulses pull towards 0 and
  1, the values trained ten times slower (19.5 dB at amount 0.5 after two epochs, even given the true mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from denoiser.models.base import DenoisingModel, pad_to_multiple, unshuffled_conv
from denoiser.models.unet import masked_mean, run_trunk, trunk_layers, trunk_levels, trunk_radius

# The input also carries each value's closeness to an extreme, 1 at 0 or 1 and 0 from this far inside: an
# impulse is decided pixel by pixel, while the trunk works at half resolution, so the detector is handed the
# per-pixel evidence directly. It covers impulses moved off the extremes by JPEG or by the sensor (15/255).
EXTREME_BAND = 24 / 255

GUESS_WINDOW = 5  # the first guess averages this window's values, weighted by their distance from an extreme

# A value that differs from the clean one by more than this is "corrupted" for the detection target: above
# JPEG's error on clean pixels at usual qualities, below any impulse or halo worth repainting.
DETECT_TOLERANCE = 12 / 255


@dataclass
class ImpulseConfig:
    in_channels: int = 3  # colour in one pass; grayscale images are repeated to 3 channels by the runner
    widths: tuple[int, ...] = (32, 64, 128)  # features at 1/2, 1/4 and 1/8 of the input resolution
    blocks: tuple[int, ...] = (1, 1, 2)  # residual blocks per level; the lowest level is the bottleneck
    # When this network runs alone, a value is repainted where its detection logit is above this: 0 is the
    # even-odds cut the detector is trained for; a checkpoint may set another without retraining. (In the
    # Impulse U-Net pair, `denoiser.models.detect_fill` applies its own two cuts instead.)
    threshold: float = 0.0

    def __post_init__(self) -> None:
        self.widths, self.blocks = trunk_levels(self.widths, self.blocks)

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this: the unshuffle (2) times each downsampling (2)."""
        return 2 ** len(self.widths)


class ImpulseUNet(DenoisingModel):
    architecture = "impulse"
    # A replicated edge row of impulses is a line of extremes, which the detector has learned to keep as
    # structure: with replicate padding, a third of the impulses it missed on photos lay within 3 px of the
    # bottom or right edge. A reflection keeps impulses scattered (missed impulses on a validation photo at
    # amount 0.3: 2,302 with replicate, 186 with reflect).
    pad_mode = "reflect"

    def __init__(self, config: ImpulseConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ImpulseConfig()
        c, w = config.in_channels, config.widths
        # (pixels, pixels weighted by trust, first guess, extremeness) x 2x2 unshuffle
        self.head = nn.Conv2d(4 * c * 4, w[0], 3, padding=1)
        self.down_blocks, self.downs, self.ups, self.up_blocks = trunk_layers(w, config.blocks)
        self.tail = nn.Conv2d(w[0], 2 * c * 4, 3, padding=1)  # (logit, value residual) per channel x 2x2
        nn.init.zeros_(self.tail.weight)  # start undecided (p = 0.5) with the first guess as the replacement
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Any (B, in_channels, H, W), or in eval mode also (B, 1, H, W): padded, run, cropped.

        In eval mode returns the denoised images. In train mode returns (replacement values, detection
        logits) for every pixel; training composes the output with the true mask (`compose_with_mask`).
        """
        b, c, h, w = x.shape
        if c == 1 and self.config.in_channels > 1 and not self.training:
            # A gray image is a colour image whose channels agree; its three answers are averaged back.
            return self(x.expand(b, self.config.in_channels, h, w)).mean(dim=1, keepdim=True)
        if c != self.config.in_channels:
            raise ValueError(f"this model takes {self.config.in_channels} channels, got {c}")
        m = self.config.multiple
        padded = pad_to_multiple(x, m, mode=self.pad_mode)
        logits, value = self.detect_and_fill(padded)
        logits, value = logits[..., :h, :w], value[..., :h, :w]
        if not self.training:
            return torch.where(logits > self.config.threshold, value, x)
        return value, logits

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The exportable core: (N, in_channels, H, W), H and W multiples of `config.multiple`; eval output."""
        logits, value = self.detect_and_fill(x)
        return torch.where(logits > self.config.threshold, value, x)

    def detect_and_fill(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per pixel and channel: the logit that the value is corrupted, and the value to put there instead."""
        extreme = (1 - torch.minimum(x, 1 - x) / EXTREME_BAND).clamp(0, 1)
        trusted = 1 - extreme
        guess = masked_mean(x, trusted, window=GUESS_WINDOW)
        feats = torch.cat([x, x * trusted, guess, extreme], dim=1)
        h = unshuffled_conv(self.head, feats)  # (B, 4C, H, W) -> (B, 16C, H/2, W/2) -> (B, w0, ...)
        h = run_trunk(self, h)
        out = F.pixel_shuffle(self.tail(h), 2)  # (B, 8C, H/2, W/2) -> (B, 2C, H, W)
        logits, residual = out.chunk(2, dim=1)  # (B, 2C, H, W) -> two (B, C, H, W)
        return logits, guess + residual

    @property
    def receptive_radius(self) -> int:
        """Pixels beyond this distance cannot change an output pixel (an upper bound, measured in tests)."""
        return GUESS_WINDOW // 2 + trunk_radius(self.config.blocks)


def compose_with_mask(noisy: torch.Tensor, value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The switching output for a given 0/1 mask: `value` where the mask is set, the input elsewhere."""
    return noisy + mask * (value - noisy)


def detection_target(noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """What the detector should flag: values the degradation moved by more than DETECT_TOLERANCE (float 0/1)."""
    return ((noisy - clean).abs() > DETECT_TOLERANCE).to(noisy.dtype)
