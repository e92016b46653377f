"""The default denoiser: a switching, residual U-Net autoencoder that only repaints likely impulses.

Why this design, piece by piece:

* **Switching output** (as in switching median filters, e.g. Hwang & Haddad 1995): salt-and-pepper noise
  only ever sets pixels to exactly 0 or 1, so every other pixel is already clean. The network sees that
  impulse mask as an input and its output replaces only masked pixels; all others pass through
  unchanged. No capacity is spent copying clean pixels, and nothing clean gets blurred.
* **Residual learning** (DnCNN, Zhang et al. 2017): a cheap first guess, the mean of the unmasked
  neighbours in a small window, is computed in closed form and the network predicts only the correction.
* **Encoder-decoder with skips** (U-Net, Ronneberger et al. 2015): it stays a denoising autoencoder, and
  three scales give a receptive field wide enough to inpaint even at 90% noise, where the nearest clean
  pixel can be several pixels away. Skips are added rather than concatenated, which is cheaper.
* **Reversible downsampling first** (FFDNet, Zhang et al. 2018): `pixel_unshuffle` folds each 2x2 block
  into channels, so no convolution runs at full resolution. That is what makes a 512x512 colour photo
  fast on a CPU.
* **Clipped regions are not noise.** Photos have highlights and shadows clipped to exactly 1 or 0, which
  look like impulses pixel by pixel. A 0/1 pixel whose value fills more of its 9x9 window than random
  noise plausibly could (a one-sided binomial test, `UNetConfig.saturation_z`) is kept as clean.
* **Lines and borders are not noise.** Under noise every value of a one-pixel black line is exact, but it
  sits on a straight run of extremes far denser in its own than the noise around; such runs keep their
  values and the impulses on them take the run's extreme (`denoiser.models.runs`, `UNetConfig.run_half`).
* Fully convolutional: any height and width; inputs are padded to a multiple of 8 and cropped back, never
  resized (`forward` pads; `forward_padded`, the part exported to ONNX, takes padded inputs).
* Grayscale and colour. The shipped default is a grayscale network; it runs colour images channel by
  channel, folded into the batch, which handles per-pixel and per-channel impulses alike. A colour network
  of the same design (`in_channels=3`, `train.py --recipe default-colour`) sees the three channels of each
  pixel in one pass, for about half the time; published into the default's `colour/` folder it would take
  the colour images. The one trained on this project's CPU was not good enough to ship (README, Training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from denoiser.models.base import DenoisingModel, inside_counts, unshuffled_conv
from denoiser.models.runs import decide_runs
from denoiser.noise import impulse_mask


REPAINT_MARGIN = 2.0**-20  # how far inside 0 and 1 a repainted value stays (far below one 8-bit step)


@dataclass
class UNetConfig:
    in_channels: int = 1  # 1: grayscale (alone, it runs colour images channel by channel); 3: colour in one pass
    widths: tuple[int, ...] = (32, 64, 128)  # features at 1/2, 1/4 and 1/8 of the input resolution
    blocks: tuple[int, ...] = (1, 1, 2)  # residual blocks per level; the lowest level is the bottleneck
    fill_window: int = 5  # window of the masked-mean first guess; odd
    # Photos have clipped highlights and shadows: whole regions of exact 0 or 1. A 0/1 pixel is taken as clean,
    # not as an impulse, when its value fills more of its `saturation_window` window than even half-salt noise
    # at amount 1 would: share > 1/2 + saturation_z * sqrt(1/4 / n), n = the window's pixels inside the image.
    # The test is local (tiles agree with whole images) and stricter near borders, where windows are small.
    # With z = 2.5, a full 9x9 window needs 52 of 81: dense noise (amount 0.9, half salt) gets there about once
    # in 1,800 pixels, while a clipped region (share 1 - amount/2) keeps passing up to amount 0.72. z = 2.0
    # passes clipped regions up to 0.78 (scikit-image's astronaut at 0.7: +1.7 dB with the shipped weights) but
    # lets more noise through (CIFAR-10 at 0.9: -0.37 dB). 0: no check.
    saturation_window: int = 9
    saturation_z: float = 2.5
    # One-pixel lines and borders: an exact 0 (1) with a horizontal or vertical run of its own extreme on both
    # sides, `run_half` values each, far denser than the noise around (z = `run_z`) and with nothing between 0
    # and 1 in it, is kept, and impulses on such a run take its extreme (`denoiser.models.runs`). 32 values keep
    # a line's side with probability 0.998 at amount 0.5 while a side of noise passes at most once in 1,600
    # (before the test on values between). 0: no runs.
    run_half: int = 32
    run_z: float = 3.5

    def __post_init__(self) -> None:
        self.widths, self.blocks = trunk_levels(self.widths, self.blocks)
        if self.fill_window % 2 == 0 or (self.saturation_window and self.saturation_window % 2 == 0):
            raise ValueError("fill_window and saturation_window must be odd")

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this: the unshuffle (2) times each downsampling (2)."""
        return 2 ** len(self.widths)


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def _stage(width: int, n_blocks: int) -> nn.Sequential:
    return nn.Sequential(*(ResBlock(width) for _ in range(n_blocks)))


def masked_mean(x: torch.Tensor, keep: torch.Tensor, *, window: int) -> torch.Tensor:
    """Mean of the kept pixels in each window; 0.5 where a window holds none."""
    total = F.avg_pool2d(x * keep, window, stride=1, padding=window // 2)
    count = F.avg_pool2d(keep, window, stride=1, padding=window // 2)
    return torch.where(count > 0, total / count.clamp_min(1e-6), 0.5)


def window_count(m: torch.Tensor, *, window: int) -> torch.Tensor:
    """How many pixels of each window x window neighbourhood are set, for a 0/1 mask (zeros beyond edges).

    The mean times the window's size, rounded: exact for 0/1 masks. avg_pool2d(divisor_override=1) gives
    the same sums, but torch 2.14's ONNX exporters (both) silently turn it into a plain mean.
    """
    mean = F.avg_pool2d(m, window, stride=1, padding=window // 2, count_include_pad=True)
    return (mean * window**2).round()


class UNetDenoiser(DenoisingModel):
    architecture = "unet"

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or UNetConfig()
        c, w = config.in_channels, config.widths
        self.head = nn.Conv2d(3 * c * 4, w[0], 3, padding=1)  # (pixels, mask, first guess) x 2x2 unshuffle
        self.down_blocks, self.downs, self.ups, self.up_blocks = trunk_layers(w, config.blocks)
        self.tail = nn.Conv2d(w[0], c * 4, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # start as the masked-mean filter and learn the correction
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Any (B, C, H, W): channels folded into the batch, padded, run through `forward_padded`, cropped.

        Training calls this; inference (`denoiser.runners.ModelDenoiser`) does the folding and padding
        itself, so that the same `forward_padded` can be swapped for its ONNX export.
        """
        b, c, h, w = x.shape
        if c != self.config.in_channels:
            if self.config.in_channels != 1:
                raise ValueError(f"this model takes {self.config.in_channels} channels, got {c}")
            x = x.reshape(b * c, 1, h, w)  # (B, C, H, W) -> (B*C, 1, H, W): channels run one by one
        m = self.config.multiple
        pad_h, pad_w = -h % m, -w % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        y = self.forward_padded(x)[..., :h, :w]
        return y.reshape(b, c, h, w)  # (B*C, 1, H, W) -> (B, C, H, W); a no-op when channels match

    def impulses(self, x: torch.Tensor) -> torch.Tensor:
        """Which pixels to repaint: 0/1 pixels, except those inside a clipped region or on a run of their own
        value; impulses on a run count, though the run decides their value (`decide`)."""
        return self.decide(x)[1]

    def decide(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The exact rule's verdict: `x` with impulses on a run set to its extreme, the impulse mask (bool),
        and the map of those decided impulses (bool), which the network takes as known."""
        noisy = impulse_mask(x)
        k = self.config.saturation_window
        if k:
            count = lambda m: window_count(m, window=k)  # noqa: E731
            (up, down), (left, right) = (inside_counts(x, reach=k // 2, dim=d) for d in (-2, -1))
            inside = (up + down + 1) * (left + right + 1)  # (1, 1, H, W): window pixels inside the image
            white, black = count((x >= 1).to(x.dtype)), count((x <= 0).to(x.dtype))
            # Counts are whole numbers, so this is exact; ONNX Runtime's Where is several times slower than arithmetic.
            same = (black + (white - black) * (x >= 1).to(x.dtype)) / inside
            bar = 0.5 + self.config.saturation_z * 0.5 / inside.sqrt()
            noisy = noisy & (same <= bar)
        if not self.config.run_half:
            return x, noisy, torch.zeros_like(noisy)
        return decide_runs(x, noisy, half=self.config.run_half, z=self.config.run_z)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The exportable core: (N, in_channels, H, W) with H and W multiples of `config.multiple`.

        No shape-dependent Python branches, so `torch.onnx.export` traces it with dynamic N, H and W.
        """
        x, noisy, decided = self.decide(x)
        repaint = noisy & ~decided
        # Repainted values stay strictly inside (0, 1), so an exact extreme where the input held the other one is
        # always a run's verdict, which the colour fill then leaves alone (`denoiser.colour`).
        return self.fill(x, repaint.to(x.dtype), within=REPAINT_MARGIN)

    def fill(self, x: torch.Tensor, noisy: torch.Tensor, *, within: float | None = None) -> torch.Tensor:
        """Repaint the pixels where `noisy` (0/1, shaped like x) is 1 and keep the rest: the network's work once
        the impulses are known, whoever found them (its own rule, or a learned detector). With `within`, the
        repainted values are clamped to [within, 1 - within]."""
        keep = 1.0 - noisy
        guess = masked_mean(x, keep, window=self.config.fill_window)
        feats = torch.cat([x * keep, noisy, guess], dim=1)
        h = unshuffled_conv(self.head, feats)  # (B, 3C, H, W) -> (B, 12C, H/2, W/2) -> (B, w0, ...)
        h = run_trunk(self, h)
        residual = F.pixel_shuffle(self.tail(h), 2)  # (B, 4C, H/2, W/2) -> (B, C, H, W)
        values = guess + residual
        if within is not None:
            values = values.clamp(within, 1 - within)
        return keep * x + noisy * values

    def colour_tensors_from_gray(self, gray: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A grayscale U-Net's tensors as a start for this colour one (`train.py --init-from`): the trunk as it
        is, the head reading each input feature as the mean of its three colour channels, and the tail giving
        every channel the gray network's correction. Before any training, the colour network then repaints
        each channel from its own first guess plus the correction the gray network finds for the channel mean."""
        c = self.config.in_channels
        head, tail, tail_bias = gray["head.weight"], gray["tail.weight"], gray["tail.bias"]
        if c == 1 or head.shape[1] != 3 * 4:
            raise ValueError(f"expected a grayscale U-Net's tensors for a colour one, got a head of shape "
                             f"{tuple(head.shape)} for {c} channels")
        w0 = head.shape[0]
        # Unshuffled input channel (feature * C + colour) * 4 + position; gray: feature * 4 + position.
        head = head.reshape(w0, 3, 1, 4, 3, 3).expand(w0, 3, c, 4, 3, 3) / c  # (w0, 12, ..) -> (w0, 3, C, 4, ..)
        # Output channel colour * 4 + position, shuffled back into pixels; gray: position.
        tail = tail.reshape(1, 4, w0, 3, 3).expand(c, 4, w0, 3, 3)  # (4, w0, ..) -> (C, 4, w0, ..)
        return {**gray, "head.weight": head.reshape(w0, 3 * c * 4, 3, 3),  # (w0, 3, C, 4, ..) -> (w0, 12C, ..)
                "tail.weight": tail.reshape(c * 4, w0, 3, 3),  # (C, 4, w0, ..) -> (4C, w0, ..)
                "tail.bias": tail_bias.reshape(1, 4).expand(c, 4).reshape(c * 4)}  # (4,) -> (C, 4) -> (4C,)

    @property
    def fill_radius(self) -> int:
        """How far `fill` reaches around a pixel, given the mask (first guess and trunk)."""
        return self.config.fill_window // 2 + 2 + trunk_radius(self.config.blocks)

    @property
    def receptive_radius(self) -> int:
        """Pixels beyond this distance cannot change an output pixel (an upper bound, measured in tests): the
        fill's reach plus that of the rule that makes the mask (clipped-region window, runs and their box)."""
        return self.fill_radius + max(self.config.saturation_window // 2, self.config.run_half)


def trunk_levels(widths: tuple[int, ...] | list[int],
                 blocks: tuple[int, ...] | list[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A trunk's widths and blocks as tuples (JSON gives lists back), checked to give one entry per level."""
    if len(widths) != len(blocks) or not widths:
        raise ValueError("widths and blocks need one entry per level")
    return tuple(widths), tuple(blocks)


def trunk_layers(widths: tuple[int, ...], blocks: tuple[int, ...]) -> tuple[nn.ModuleList, ...]:
    """The U-Net between head and tail: residual stages per level going down, 2x2 down convs, 2x2 up convs,
    and stages going up (none below the bottleneck), as (down_blocks, downs, ups, up_blocks)."""
    levels = range(len(widths))
    return (nn.ModuleList(_stage(widths[i], blocks[i]) for i in levels),
            nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 2, stride=2) for i in levels[:-1]),
            nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in levels[:-1]),
            nn.ModuleList(_stage(widths[i], blocks[i]) for i in levels[:-1]))


def run_trunk(model: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The U-Net between head and tail: `model.down_blocks`, `downs`, `ups`, `up_blocks`, skips added."""
    skips = []
    for level, blocks in enumerate(model.down_blocks):
        h = blocks(h)
        if level < len(model.downs):
            skips.append(h)
            h = F.relu(model.downs[level](h))
    for level in reversed(range(len(model.ups))):
        h = model.up_blocks[level](F.relu(model.ups[level](h)) + skips[level])
    return h


def trunk_radius(blocks: tuple[int, ...]) -> int:
    """How far the unshuffled U-Net trunk (head conv, residual blocks, 2x2 down/up convs, tail, shuffle) reaches."""
    scale = 2  # after the unshuffle
    radius = scale  # head conv
    for level, n_blocks in enumerate(blocks):
        down_and_up = 2 if level < len(blocks) - 1 else 1
        radius += scale * 2 * n_blocks * down_and_up
        if level < len(blocks) - 1:
            radius += scale * 2  # the 2x2 down conv and the 2x2 up conv
            scale *= 2
    return radius + 2 + 2  # tail conv, then the pixel shuffle
