"""The one table of architectures: how to build each network, wrap it for inference, and test it.

`ARCHITECTURES` maps the name stored in a checkpoint's `config.json` to the model class, its config
dataclass, the inference wrapper (`denoiser.runners`) and a tiny config for fast tests. `build_model`,
`wrap_model`, `train.py --arch` and the parametrized model tests all read this table, so adding an
architecture is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from denoiser.interface import Denoiser
from denoiser.models import (ArticleAutoencoder, ArticleConfig, DenoisingModel, DetectFill, DetectFillConfig,
                             ImpulseConfig, ImpulseUNet, UNetConfig, UNetDenoiser)
from denoiser.runners import ArticleDenoiser, ModelDenoiser


@dataclass(frozen=True)
class Architecture:
    model: type[DenoisingModel]
    config: type  # the model's config dataclass; config.json stores its fields
    runner: type[Denoiser]  # the inference wrapper that makes the model a Denoiser
    tiny: dict[str, Any] = field(default_factory=dict)  # a small config that builds and runs in milliseconds
    runner_options: dict[str, Any] = field(default_factory=dict)  # the wrapper's defaults for this network


ARCHITECTURES: dict[str, Architecture] = {
    "article": Architecture(ArticleAutoencoder, ArticleConfig, ArticleDenoiser, tiny={"channels": 4, "latent_dim": 16}),
    # 1024x1024 tiles: a 2048x2048 colour photo took 5.4 s instead of 7.7 on ONNX Runtime and 7.5-7.9 instead of
    # 10.0 on PyTorch (less overlap to recompute), at 1.16-1.24 GB peak for the whole process (this 2-core CPU).
    # The detect-fill pair keeps 512: it peaked at 1.77 GB with 1024. With its refiner, whose reach widens each
    # tile's margin to 232 px, a 2048x2048 colour JPEG through the default folder peaked at 1.24 GB (ONNX
    # Runtime) and 1.36 GB (PyTorch) once its filler ran channel by channel (1.70 GB while folded).
    "unet": Architecture(UNetDenoiser, UNetConfig, ModelDenoiser, tiny={"widths": [8, 16], "blocks": [1, 1]},
                         runner_options={"tile_size": 1024}),
    "impulse": Architecture(ImpulseUNet, ImpulseConfig, ModelDenoiser, tiny={"widths": [8, 16], "blocks": [1, 1]}),
    "detect_fill": Architecture(DetectFill, DetectFillConfig, ModelDenoiser,
                                tiny={"detector": {"widths": [8, 16], "blocks": [1, 1]},
                                      "filler": {"widths": [8, 16], "blocks": [1, 1]},
                                      "refiner": {"widths": [8, 16], "blocks": [1, 1]}}),
}


def _architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r} (expected one of {', '.join(sorted(ARCHITECTURES))})")
    return ARCHITECTURES[name]


def build_model(name: str, config: dict[str, Any] | None = None) -> DenoisingModel:
    """A freshly initialised model from the architecture name and a dict of its config fields."""
    arch = _architecture(name)
    try:
        cfg = arch.config(**(config or {}))
    except TypeError as err:  # an unknown or missing field in config.json or a CLI override
        raise ValueError(f"bad config for architecture {name!r}: {err}") from None
    return arch.model(cfg)


def wrap_model(model: DenoisingModel, **options: Any) -> Denoiser:
    """The inference wrapper of `model`'s architecture around it (options go to the wrapper)."""
    arch = _architecture(model.architecture)
    return arch.runner(model, **{**arch.runner_options, **options})
