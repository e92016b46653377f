"""Inference wrappers that turn a network into a `Denoiser`: tiling for the U-Net, 32x32 tiles for the article.

* `ModelDenoiser` runs a fully convolutional model (the default U-Net) at any size. Images larger than
  `tile_size` x `tile_size` run in overlapping tiles whose margin covers the network's receptive field, so
  the result matches the untiled one (to float rounding) while memory stays bounded by the tile size.
  After the U-Net has run on a colour image (a grayscale network channel by channel, or a colour network
  in one pass), its repainted values are re-estimated from the pixel's other channels and its neighbours'
  colour (`denoiser.colour`), unless `colour_fill=False`. An image read as clean or lightly hit keeps every
  exact black and white value but its lone and paired ones, and those too when they are of one polarity only
  (`denoiser.sparse`), unless `keep_detail=False`. On a noisy one, clusters of one extreme too large to be noise
  and erased by the network (text, slanted lines, line art) get their values back (`denoiser.strokes`), unless
  `keep_strokes=False`. With `views` above 1, each image is the mean of that many flipped and transposed
  views, as far as a pixel budget allows (`denoiser.ensemble`; the default model's `moved/` model).
* `ByChannels` holds the two networks of one checkpoint folder (a network and a `colour/` one for colour
  images in one pass) and gives each image to the one for its channels.
* `ByImpulses` holds a checkpoint folder's model and its `moved/` one, and gives each image whose impulses
  moved off pure black and white (`denoiser.moved`: a noisy JPEG, say) to the second.
* `ArticleDenoiser` runs the autoencoder of Paperspace's "Denoising Autoencoders" article, which knows only
  32x32 grayscale images. Anything else is processed per channel in 32x32 tiles (the image is edge-padded
  to a multiple of 32 and cropped back), and each tile is replaced by the model's reconstruction, as in the
  article. Expect blocky, blurry results on photos.

Each runner calls its model through `core` (the method named by `core_method`); `denoiser.onnx_backend`
replaces it with an ONNX Runtime session of that method's export, and sets `backend` to "onnx" (or "onnx-int8").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from denoiser import ensemble
from denoiser.colour import colour_difference_fill
from denoiser.imaging import array_view
from denoiser.interface import Denoiser, Progress, check_batch
from denoiser.models import ArticleAutoencoder, UNetDenoiser
from denoiser.models.base import pad_to_multiple
from denoiser.moved import moved_impulses
from denoiser.sparse import kept_extremes
from denoiser.strokes import kept_strokes

# What runs the network: the model's `core_method` on PyTorch, or a `denoiser.onnx_backend.OnnxCore`.
Core = Callable[[torch.Tensor], torch.Tensor]


def _probe_images(shape: tuple[int, ...], *, seed: int) -> torch.Tensor:
    """Inputs that take every path of an impulse denoiser: clipped regions of 0 and 1, impulses, plain pixels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    h, w = shape[-2:]
    x[..., : h // 3, : w // 2] = 1.0
    x[..., h // 2 :, w // 3 :] = 0.0
    hit = torch.rand(shape, generator=g)
    return torch.where(hit < 0.15, 0.0, torch.where(hit > 0.85, 1.0, x))


# On the CPU a batch of small images runs in calls of at most this many pixels (per channel, padded), unless
# the core asks for another size (`OnnxCore.call_pixels`). PyTorch is faster in cache-sized calls than in one
# big one: 1,500 32x32 channels (the CIFAR-10 benchmark's colour batch of 500) took 0.64 s in one call and
# 0.52 s in calls of 128 (this 2-core CPU; scratch measurement, median of 5). A 512x512 channel is one call.
CPU_CALL_PIXELS = 128 * 32 * 32


class ModelDenoiser(Denoiser):
    """A fully convolutional model (the default U-Net), tiled above `tile_size` x `tile_size` pixels.

    The runner folds colour into the batch (for a grayscale network), pads to the model's multiple, tiles
    and crops; the model's `forward_padded` (`core_method`) does the rest. `core` is that method on
    PyTorch, or a `denoiser.onnx_backend.OnnxCore` running its export, so both backends share this code.
    """

    core_method = "forward_padded"  # what the ONNX export covers
    dynamic_dims = (0, 2, 3)  # batch, height and width vary in the exported graph

    def __init__(self, model: UNetDenoiser, *, name: str = "Default model", tile_size: int = 512,
                 call_pixels: int | None = None, colour_fill: bool = True, keep_detail: bool = True,
                 keep_strokes: bool = True, views: int = 1) -> None:
        # channels_last: oneDNN's faster convolution layout, ~1.4x at 32x32 on this CPU.
        self.model, self.name = model.eval().to(memory_format=torch.channels_last), name
        self.device = next(model.parameters()).device
        self.core: Core = getattr(model, self.core_method)
        self.backend = "torch"
        multiple = model.config.multiple
        if tile_size % multiple:
            raise ValueError(f"tile_size must be a multiple of {multiple}")
        if call_pixels is not None and call_pixels < 1:
            raise ValueError("call_pixels must be at least 1")
        self.tile_size = tile_size
        self.margin = math.ceil(model.receptive_radius / multiple) * multiple
        self._call_pixels = call_pixels
        # `denoiser.colour`: the U-Net's repainted colour values re-estimated from the pixel's kept channels and
        # its neighbours' colour. Any switching U-Net qualifies, a colour one too: after the colour network of
        # `train.py --recipe default-colour`, which sees every channel, the fill still added 10.1 dB on clean
        # validation photos, 4.9 dB with per-channel noise at 0.3 and 0.2-0.7 dB with per-pixel noise (README,
        # Training). It costs 20-90 ms on a 512x512 colour photo (per-pixel and per-channel noise).
        self.colour_fill = colour_fill and isinstance(model, UNetDenoiser)
        # `denoiser.sparse`: on an image read as clean or lightly hit, only lone and paired exact extremes are
        # impulses, so lines, text and clipped specks keep their black and white. For the U-Net's exact rule only;
        # a learned detector decides for itself.
        self.keep_detail = keep_detail and isinstance(model, UNetDenoiser)
        # `denoiser.strokes`: the same for the exact rule's other blind spot, strokes under noise.
        self.keep_strokes = keep_strokes and isinstance(model, UNetDenoiser)
        # `denoiser.ensemble`: the mean of up to this many flipped and transposed views of each image, as far as
        # its pixel budget allows (the default model's `moved/` model: `denoiser.inference.MOVED_VIEWS`).
        if not 1 <= views <= ensemble.VIEWS:
            raise ValueError(f"views must be in [1, {ensemble.VIEWS}], got {views}")
        self.views = views

    @property
    def call_pixels(self) -> int | None:
        """At most this many pixels per channel go into one core call of small images; None: the batch whole."""
        if self._call_pixels is not None or self.device.type != "cpu":
            return self._call_pixels  # a GPU wants its batch whole
        # The core is swapped after construction (denoiser.onnx_backend), so ask it at call time.
        return getattr(self.core, "call_pixels", CPU_CALL_PIXELS)

    @property
    def peak_tile_pixels(self) -> int:
        """The largest input one model call sees, per channel: what bounds memory on big images."""
        return (self.tile_size + 2 * self.margin) ** 2

    def export_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """An input to trace the export with and a second one, of other sizes, to check it on."""
        c, m = self.model.config.in_channels, self.model.config.multiple
        return _probe_images((2, c, 3 * m, 2 * m), seed=0), _probe_images((3, c, 5 * m, 7 * m), seed=1)

    @torch.inference_mode()
    def denoise_batch(self, images: torch.Tensor, *, progress: Progress | None = None) -> torch.Tensor:
        check_batch(images)
        c = images.shape[1]
        device, images = images.device, images.to(self.device)
        kept = kept_extremes(images, flagged=self.model.impulses) if self.keep_detail else None
        # On the CPU a batch that keeps every value skips the network; on a GPU asking would wait for the device.
        if kept is not None and self.device.type == "cpu" and bool(kept.all()):
            if progress:
                progress(1, 1)
            return images.clone().to(device)
        # An int8 core hands the images read as clean or lightly hit to its float graph: there the network
        # repaints a few specks, the int8 steps would be most of what error is left, and their outputs stay
        # PyTorch's. Each image goes one way whatever its batch holds.
        exact = getattr(self.core, "exact", None)
        clean = _read_as_clean(kept) if exact is not None and kept is not None else None
        if clean is None or not clean.any():
            out = self._network(images, core=self.core, progress=progress)
        elif clean.all():
            out = self._network(images, core=exact, progress=progress)
        else:
            out = torch.empty_like(images)
            for core, which in ((exact, clean), (self.core, ~clean)):
                out[which] = self._network(images[which], core=core, progress=progress)
        if self.colour_fill and c == 3:
            out = colour_difference_fill(images, out)
        if self.keep_strokes:
            out = _with_strokes(images, out, kept=kept)
        if kept is not None:
            out = torch.where(kept, images, out)
        return out.to(device)

    def _network(self, images: torch.Tensor, *, core: Core, progress: Progress | None) -> torch.Tensor:
        """The network's output for `images` (B, C, H, W) through `core`: folded, padded, tiled, in [0, 1]."""
        b, c, h, w = images.shape
        x = self._fold(images)
        # Pad once to the model's multiple, so tile edges fall on the same grid as the whole image's.
        x = pad_to_multiple(x, self.model.config.multiple, mode=self.model.pad_mode)
        count = ensemble.passes(h, w, most=self.views)
        if h * w <= self.tile_size**2:
            out = self._in_calls(x, core=core, count=count, progress=progress)
        else:
            # On a GPU one call per image's channels; on the CPU one tile of one channel (or image) per call.
            chunk = b if self.call_pixels is None else 1
            out = self._tiled(x, core=core, chunk=chunk, count=count, progress=progress)
        return self._unfold(out[..., :h, :w], channels=c).clamp(0, 1)

    def _fold(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        expected = self.model.config.in_channels
        if c == expected:
            return x
        if expected == 1:
            return x.reshape(b * c, 1, h, w)  # (B, C, H, W) -> (B*C, 1, H, W): a gray network, channel by channel
        if c == 1:
            # A colour network sees a gray image as colour whose channels agree: a per-pixel colour case.
            return x.expand(b, expected, h, w)
        raise ValueError(f"this model takes {expected} channels (or 1), got {c}")

    def _unfold(self, out: torch.Tensor, *, channels: int) -> torch.Tensor:
        """The model's output back to the caller's channels: the inverse of `_fold`."""
        b, h, w = out.shape[0] * out.shape[1] // channels, *out.shape[-2:]
        if out.shape[1] != channels and channels == 1:
            return out.mean(dim=1, keepdim=True)  # (B, 3, H, W) -> (B, 1, H, W): the gray image's three copies
        return out.reshape(b, channels, h, w)  # (B*C, 1, H, W) -> (B, C, H, W); a no-op when not folded

    @staticmethod
    def _run(parts: list[torch.Tensor], *, core: Core, count: int) -> list[torch.Tensor]:
        """Each part through `core`, as the mean of `count` views (`denoiser.ensemble`)."""
        # An ONNX core runs many small calls side by side (`OnnxCore.run_many`); PyTorch one after another.
        run_many = getattr(core, "run_many", None) or (lambda many: [core(part) for part in many])
        return ensemble.ensembled(run_many, parts, count=count)

    def _in_calls(self, x: torch.Tensor, *, core: Core, count: int, progress: Progress | None) -> torch.Tensor:
        """The padded batch through `core`, at most `call_pixels` pixels (but one image at least) per call."""
        per_call = len(x) if self.call_pixels is None else max(1, self.call_pixels // (x.shape[-2] * x.shape[-1]))
        outs = self._run(list(x.split(per_call)), core=core, count=count)
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        if progress:
            progress(1, 1)
        return out

    def _tiled(self, x: torch.Tensor, *, core: Core, chunk: int, count: int,
               progress: Progress | None) -> torch.Tensor:
        """Overlapping tiles of the padded batch, `chunk` images (one channel of each, once folded) per call."""
        n, _, hp, wp = x.shape
        out = torch.empty_like(x)
        t, g = self.tile_size, self.margin
        total, done = math.ceil(hp / t) * math.ceil(wp / t) * math.ceil(n / chunk), 0
        for y0 in range(0, hp, t):
            for x0 in range(0, wp, t):
                y1, x1 = min(y0 + t, hp), min(x0 + t, wp)
                top, left = max(0, y0 - g), max(0, x0 - g)
                for i in range(0, n, chunk):  # a chunk at a time bounds the peak memory
                    tile = x[i:i + chunk, :, top:min(hp, y1 + g), left:min(wp, x1 + g)]
                    res = self._run([tile], core=core, count=count)[0]
                    out[i:i + chunk, :, y0:y1, x0:x1] = res[..., y0 - top:y1 - top, x0 - left:x1 - left]
                    done += 1
                    if progress:
                        progress(done, total)
        return out


def _read_as_clean(kept: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the images that `kept` (from `kept_extremes`) keeps any value of, those read as clean or lightly
    hit; on a noisy image it keeps none."""
    return kept.flatten(1).any(dim=1)  # (B, C, H, W) -> (B, C*H*W) -> (B,)


def _with_strokes(images: torch.Tensor, out: torch.Tensor, *, kept: torch.Tensor | None) -> torch.Tensor:
    """`out` with the strokes of `images` restored (`denoiser.strokes`), on the images that `kept` (from
    `kept_extremes`, or None) does not read as clean: there its mask already holds every stroke."""
    if kept is None:
        return torch.where(kept_strokes(images, out), images, out)
    noisy = ~_read_as_clean(kept)  # a clean image's mask keeps nearly all
    if not noisy.any():
        return out
    strokes = torch.zeros_like(images, dtype=torch.bool)
    strokes[noisy] = kept_strokes(images[noisy], out[noisy])
    return torch.where(strokes, images, out)


def _backends(**parts: Denoiser) -> str:
    """How the parts of a two-model runner run: "onnx" or "torch", or each part's when they differ."""
    found = {name: getattr(part, "backend", "torch") for name, part in parts.items()}
    if len(set(found.values())) == 1:
        return next(iter(found.values()))
    return ", ".join(f"{name}: {backend}" for name, backend in found.items())


class ByChannels(Denoiser):
    """Two networks of one checkpoint folder: colour images go to `colour`, grayscale ones to `gray`.

    `train.py --recipe default-colour` publishes a colour network into the default model's `colour/` folder: in
    one pass it sees every channel of a pixel at once and costs about half of three grayscale passes (512x512
    colour photo; README, Training), while grayscale images keep the network trained for them.
    """

    def __init__(self, *, gray: Denoiser, colour: Denoiser) -> None:
        self.gray, self.colour, self.name, self.device = gray, colour, gray.name, gray.device

    @property
    def backend(self) -> str:
        return _backends(gray=self.gray, colour=self.colour)

    def denoise_batch(self, images: torch.Tensor, *, progress: Progress | None = None) -> torch.Tensor:
        check_batch(images)
        return (self.colour if images.shape[1] == 3 else self.gray).denoise_batch(images, progress=progress)


class ByImpulses(Denoiser):
    """Two models of one checkpoint folder: images whose impulses moved off exact black and white go to `moved`,
    the rest to `exact`, image by image (`denoiser.moved.moved_impulses`).

    The default model's U-Net repaints exactly the values at 0 or 1, which is right for lossless files and
    blind to noise saved as JPEG; its folder's `moved/` model is the Impulse U-Net, whose learned detector
    finds impulses wherever compression left them (README, Photos).
    """

    def __init__(self, *, exact: Denoiser, moved: Denoiser, run_both: bool | None = None) -> None:
        self.exact, self.moved, self.name, self.device = exact, moved, exact.name, exact.device
        # On a GPU the host would wait for the test's answer before it could pick a model (a synchronisation in
        # every call); there both models run on the whole batch and the answer picks each image's result on
        # the device. None: so on GPUs, and a branch on the CPU; a branch on GPUs too when `moved` averages
        # several views (`denoiser.ensemble`), since running it on every batch would cost more than the wait.
        self.run_both = run_both

    @property
    def backend(self) -> str:
        return _backends(exact=self.exact, moved=self.moved)

    def denoise_batch(self, images: torch.Tensor, *, progress: Progress | None = None) -> torch.Tensor:
        check_batch(images)
        moved = moved_impulses(images)
        several_views = getattr(self.moved, "views", 1) > 1
        if self.run_both if self.run_both is not None else images.device.type != "cpu" and not several_views:
            exact = self.exact.denoise_batch(images, progress=_part(progress, before=0.0, weight=0.5))
            return torch.where(moved[:, None, None, None],  # (B,) -> (B, 1, 1, 1)
                               self.moved.denoise_batch(images, progress=_part(progress, before=0.5, weight=0.5)),
                               exact)
        if not moved.any():
            return self.exact.denoise_batch(images, progress=progress)
        if moved.all():
            return self.moved.denoise_batch(images, progress=progress)
        out = torch.empty_like(images)
        share = moved.float().mean().item()  # the second part's share of the progress bar
        out[~moved] = self.exact.denoise_batch(images[~moved], progress=_part(progress, before=0.0, weight=1 - share))
        out[moved] = self.moved.denoise_batch(images[moved], progress=_part(progress, before=1 - share, weight=share))
        return out


def sends_to_moved(denoiser: Denoiser, image: np.ndarray) -> bool:
    """Whether `denoiser` hands this float32 (H, W) or (H, W, 3) image to its `moved/` model: what the app and
    the `denoise` command tell their users."""
    return isinstance(denoiser, ByImpulses) and bool(moved_impulses(array_view(image)).item())


def _part(progress: Progress | None, *, before: float, weight: float) -> Progress | None:
    """`progress` for one part of a job that has `before` of the whole done and is `weight` of it, in permille."""
    if progress is None:
        return None
    return lambda done, total: progress(round(1000 * (before + weight * done / total)), 1000)


class ArticleDenoiser(Denoiser):
    """The article's autoencoder: 32x32 grayscale natively, per-channel 32x32 tiles for anything else."""

    core_method = "forward"  # the ONNX export covers the whole autoencoder
    dynamic_dims = (0,)  # only the number of 32x32 tiles varies

    def __init__(self, model: ArticleAutoencoder, *, name: str = "Article autoencoder", batch_size: int = 1024) -> None:
        self.model, self.name, self.batch_size = model.eval(), name, batch_size
        self.device = next(model.parameters()).device
        self.core: Core = getattr(model, self.core_method)
        self.backend = "torch"

    def export_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """An input to trace the export with and a second one, another number of tiles, to check it on."""
        s, c = self.model.config.image_size, self.model.config.in_channels
        return torch.rand(2, c, s, s), torch.rand(5, c, s, s)

    @torch.inference_mode()
    def denoise_batch(self, images: torch.Tensor, *, progress: Progress | None = None) -> torch.Tensor:
        check_batch(images)
        s = self.model.config.image_size
        b, c, h, w = images.shape
        x = images.to(self.device).reshape(b * c, 1, h, w)  # (B, C, H, W) -> (B*C, 1, H, W)
        x = F.pad(x, (0, -w % s, 0, -h % s), mode="replicate")
        hp, wp = x.shape[-2:]
        tiles = F.unfold(x, s, stride=s)  # (B*C, s*s, L): one column per 32x32 tile
        n_tiles = tiles.shape[-1]
        tiles = tiles.transpose(1, 2).reshape(-1, 1, s, s)  # (B*C, s*s, L) -> (B*C*L, 1, s, s)
        chunks = tiles.split(self.batch_size)
        outs = []
        for i, chunk in enumerate(chunks):
            outs.append(self.core(chunk))
            if progress:
                progress(i + 1, len(chunks))
        out = torch.cat(outs)
        out = out.reshape(b * c, n_tiles, s * s).transpose(1, 2)  # (B*C*L, 1, s, s) -> (B*C, s*s, L)
        out = F.fold(out, (hp, wp), s, stride=s)[..., :h, :w]
        return out.reshape(b, c, h, w).clamp(0, 1).to(images.device)  # (B*C, 1, H, W) -> (B, C, H, W)
