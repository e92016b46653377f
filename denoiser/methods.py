"""The one table of denoising methods that the app, the benchmark and the `denoise` command offer.

Each `Method` has a stable key (what API callers and `--method` send), a label for tables and the UI, a
one-line description, and `build`, which makes the `Denoiser`. The learned methods load checkpoints
(the shipped folders by default, or any folder or Hugging Face Hub repo id); the filters need nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from denoiser.filters import AdaptiveMedianDenoiser, MedianDenoiser
from denoiser.inference import ARTICLE_CHECKPOINT, DEFAULT_CHECKPOINT, IMPULSE_CHECKPOINT, Networks, load_denoiser
from denoiser.interface import Denoiser, select_device

Source = str | Path | None


@dataclass(frozen=True)
class Method:
    key: str  # the value API callers and `denoise --method` send
    label: str  # what tables and the UI show
    blurb: str  # one line on what it does
    learned: bool  # True: loads a checkpoint (`source`); False: a classic filter
    make: Callable[[Source, torch.device, str, Networks | None], Denoiser]

    def build(self, *, source: Source = None, device: str | torch.device | None = None,
              backend: str = "auto", shared: Networks | None = None) -> Denoiser:
        """The ready `Denoiser`; `source` replaces a learned method's shipped checkpoint.

        `backend` ("auto", "torch", "onnx" or "onnx-int8", see `denoiser.inference.load_denoiser`) picks how a learned
        method runs; the filters are torch code and ignore it. `shared` (a dict, the same for every method
        built) lets the learned methods share the networks they have in common (`load_denoiser`).
        """
        denoiser = self.make(source, select_device(device), backend, shared)
        denoiser.name = self.label
        return denoiser


METHODS: dict[str, Method] = {m.key: m for m in (
    Method("default", "Default model", "a U-Net trained here; it repaints only the pixels it judges to be "
           "impulses and leaves every other pixel as it is. On colour images it runs channel by channel, then "
           "each value it repainted is re-estimated from the pixel's other channels and its neighbours' colour. "
           "On a clean or lightly hit image it repaints only lone and paired black and white dots, and not "
           "even those when all are white or all black, so lines, text, clipped highlights and stars on a "
           "night sky stay. On a noisy image, one-pixel horizontal and vertical lines and borders of pure "
           "black or white stay too, and so does most black and white text, slanted lines and drawings under "
           "light noise (a tenth of the pixels hit; less of them at a third). An image whose dots moved off "
           "pure black and white (saved as JPEG after the noise, say) goes to the Impulse U-Net instead",
           True,
           lambda source, device, backend, shared: load_denoiser(source or DEFAULT_CHECKPOINT, device=device,
                                                                backend=backend, shared=shared)),
    Method("impulse", "Impulse U-Net", "a colour U-Net that learned which values are impulses, also those that "
           "JPEG or resizing moved off pure black and white; the default model's U-Net repaints what it finds, "
           "and a third network clears the ringing JPEG left around each dot, smoothing the whole image as it "
           "does: made for noisy JPEG files, it softens clean ones", True,
           lambda source, device, backend, shared: load_denoiser(source or IMPULSE_CHECKPOINT, device=device,
                                                                backend=backend, shared=shared)),
    Method("article", "Article autoencoder", "the article's 6+6-layer autoencoder. It only knows 32×32 "
           "grayscale images: on anything else it runs on each colour channel separately, in 32×32 tiles", True,
           lambda source, device, backend, shared: load_denoiser(source or ARTICLE_CHECKPOINT, device=device,
                                                                backend=backend, shared=shared)),
    Method("median3", "3×3 median", "the classic filter: every pixel becomes the median of its 3×3 "
           "neighbourhood (no learning)", False, lambda _, device, __, ___: MedianDenoiser(size=3, device=device)),
    Method("median5", "5×5 median", "the same over a 5×5 neighbourhood (no learning)", False,
           lambda _, device, __, ___: MedianDenoiser(size=5, device=device)),
    Method("adaptive_median", "Adaptive median", "a median filter that grows its window where noise is "
           "dense and only replaces pixels it judges to be noise (Hwang and Haddad, 1995; no learning)", False,
           lambda _, device, __, ___: AdaptiveMedianDenoiser(max_window=7, device=device)),
    Method("no_colour_fill", "Default, no colour fill", "the default model with each colour channel left as "
           "its network repainted it, alone: no value re-estimated from the pixel's other channels", True,
           lambda source, device, backend, shared: load_denoiser(source or DEFAULT_CHECKPOINT, device=device,
                                                                backend=backend, shared=shared, colour_fill=False)),
    Method("no_strokes", "Default, no stroke rule", "the default model without its stroke rule: under noise, "
           "black and white text, slanted lines and line art are repainted with their background", True,
           lambda source, device, backend, shared: load_denoiser(source or DEFAULT_CHECKPOINT, device=device,
                                                                backend=backend, shared=shared, keep_strokes=False)),
)}


def method(key: str) -> Method:
    """The method with this key, or a ValueError that lists the keys."""
    if not isinstance(key, str) or key not in METHODS:
        raise ValueError(f"unknown method {key!r}; choose one of {', '.join(METHODS)}")
    return METHODS[key]
