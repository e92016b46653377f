"""What a training run shows people: the labelled epoch picture, the loss and PSNR plots, the model card.

The epoch picture is the one the Paperspace article ("Denoising Autoencoders") draws after every epoch:
noisy, denoised and clean rows, one test image per class; here the rows and columns are labelled. The
plots read for runs of any length: epochs on an integer axis, and a training-loss curve sampled within
epochs, so a one-epoch run draws a curve rather than a lone dot. The card is a huggingface_hub
`ModelCard` (YAML metadata from `ModelCardData`, then Markdown), written by `denoiser.checkpoint`.

Nothing here touches the model or the optimizer: the training loop (`denoiser.training`) hands over
tensors and figures.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from huggingface_hub import ModelCard, ModelCardData

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from denoiser.models import DenoisingModel
    from denoiser.training import TrainConfig

GRID_ROWS = ("noisy", "denoised", "clean")


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: Path) -> None:
    """Write through a temporary name, so a kill never leaves a half-written picture."""
    tmp = path.with_name(f".{path.name}")
    fig.savefig(tmp, format="png")
    _pyplot().close(fig)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- the epoch picture


def epoch_grid_figure(*, noisy: torch.Tensor, denoised: torch.Tensor, clean: torch.Tensor,
                      classes: list[str]) -> Figure:
    """Noisy, denoised and clean rows of (K, C, H, W) images in [0, 1], one column per class name."""
    if not len(noisy) == len(denoised) == len(clean) == len(classes):
        raise ValueError(f"need one image per class in every row, got {len(noisy)}, {len(denoised)}, "
                         f"{len(clean)} images for {len(classes)} classes")
    plt = _pyplot()
    k = len(classes)
    fig, axes = plt.subplots(3, k, figsize=(0.95 * k + 0.9, 3.4), dpi=100, squeeze=False)
    for row, (name, images) in enumerate(zip(GRID_ROWS, (noisy, denoised, clean))):
        for col in range(k):
            ax = axes[row][col]
            image = images[col].detach().float().clamp(0, 1).cpu()
            if image.shape[0] == 1:
                ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")  # (C, H, W) -> (H, W, C)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(classes[col], fontsize=8)
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout(pad=0.3)
    return fig


def save_epoch_grid(path: Path, *, noisy: torch.Tensor, denoised: torch.Tensor, clean: torch.Tensor,
                    classes: list[str]) -> None:
    _save(epoch_grid_figure(noisy=noisy, denoised=denoised, clean=clean, classes=classes), path)


# ----------------------------------------------------------------------------- plots


def _epoch_axis(ax: Axes, epochs: int) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(0, max(epochs, 1) + 0.25)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def loss_figure(history: list[dict], curve: list[list[float]], *, loss: str) -> Figure:
    """Training loss through the run (`curve`: [position in epochs, mean loss] pairs) under the per-epoch
    training and validation losses, marked at the end of each epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=120)
    if curve:
        ax.plot([x for x, _ in curve], [y for _, y in curve], color="tab:blue", alpha=0.35, linewidth=1,
                label="train loss (within epochs)")
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train loss (epoch mean)")
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", color="tab:orange", label="val loss")
    _epoch_axis(ax, max(epochs, default=1))
    ax.set_ylabel("MSE" if loss == "mse" else "-PSNR (dB)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def psnr_figure(history: list[dict]) -> Figure:
    """Validation PSNR after each epoch, the last value written beside its point."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=120)
    epochs, values = [h["epoch"] for h in history], [h["val_psnr"] for h in history]
    ax.plot(epochs, values, "o-", color="tab:green", label="val PSNR")
    if values:
        ax.annotate(f"{values[-1]:.2f} dB", (epochs[-1], values[-1]), textcoords="offset points", xytext=(-8, 8),
                    ha="right", fontsize=8)
        ax.margins(y=0.15)  # the last value is usually the highest: room above it for the label
    _epoch_axis(ax, max(epochs, default=1))
    ax.set_ylabel("dB")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_plots(out: Path, *, history: list[dict], curve: list[list[float]], loss: str) -> None:
    """loss.png and psnr.png in the run folder."""
    _save(loss_figure(history, curve, loss=loss), out / "loss.png")
    _save(psnr_figure(history), out / "psnr.png")


# ----------------------------------------------------------------------------- the model card


def card_metadata(cfg: TrainConfig, model: DenoisingModel) -> ModelCardData:
    # The Hub links a dataset id only when it is one; any CIFAR-10 source (torchvision or a copy) is.
    datasets = ["cifar10"] if "cifar" in Path(str(cfg.data)).name.lower() else None
    return ModelCardData(library_name="denoiser", license="mit", datasets=datasets, metrics=["psnr", "ssim"],
                         tags=["image-denoising", "salt-and-pepper", model.architecture])


def shown_path(path: str | Path | None) -> str | None:
    """A path as a card shows it: relative to the working directory (the repository, for `train.py`) when it
    is there or beside it, as the README's commands name it; otherwise as given. train.py resolves the paths it
    stores (a resumed run may start elsewhere), and a card shipped in the repository should not carry the
    folders of the machine that trained it."""
    if path is None or not os.path.isabs(path):
        return None if path is None else str(path)
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive, on Windows
        return str(path)
    return relative if not relative.startswith(os.path.join("..", "..")) else str(path)


def model_card(cfg: TrainConfig, *, model: DenoisingModel, history: list[dict], final: dict) -> ModelCard:
    """The card of a finished run: what was trained, how, and its validation figures at the end."""
    last = history[-1] if history else {}
    seconds = sum(h["seconds"] for h in history)
    body = "\n".join([
        f"# {cfg.card_title}", "",
        f"Architecture `{model.architecture}`, {model.parameter_count():,} parameters, "
        f"config `{json.dumps(asdict(model.config))}`.", "",
        "## Training", "",
        f"- Data: `{shown_path(cfg.data)}` ({last.get('train_images', '?')} training images), {cfg.epochs} epoch{'s' * (cfg.epochs != 1)}, "
        f"batch {cfg.batch_size} per process, Adam lr {cfg.lr} ({cfg.schedule}), {cfg.loss} loss.",
        *([f"- Photos: `{shown_path(cfg.photos)}` as {cfg.photo_batch} crops of {cfg.photo_crop}x{cfg.photo_crop} on "
           f"{cfg.photo_share:.0%} of steps, {cfg.structure_share:.0%} of them with synthetic structure drawn in "
           "(the held-out validation photos never)."] if cfg.photos else []),
        *([f"- Started from the weights of `{shown_path(cfg.init_from)}`"
           f"{', all of them (`--init-all`)' if cfg.init_all else ''}."] if cfg.init_from else []),
        *([f"- Trained {model.parameter_count(trained_only=True):,} of the parameters; the rest stayed frozen."]
          if model.parameter_count(trained_only=True) < model.parameter_count() else []),
        f"- Noise: `{json.dumps(asdict(cfg.noise))}`, {'frozen once' if cfg.frozen_noise else 'fresh every batch'}.",
        *([f"- After the noise (`denoiser.degrade`): `{json.dumps(asdict(cfg.degradation))}`."]
          if cfg.degradation.near_extreme_share or cfg.degradation.resize_share or cfg.degradation.jpeg_share else []),
        f"- Preprocessing: `{json.dumps(asdict(cfg.preprocess))}`.",
        f"- Command: `{cfg.command or 'python train.py'}`",
        f"- Hardware: {last.get('device', '?')}, {seconds:.0f} s of training and validation.", "",
        "## Validation at the end of training", "",
        f"Noise `{json.dumps(asdict(cfg.val_noise))}` on `{json.dumps(asdict(cfg.val_preprocess))}` images, "
        f"{last.get('val_images', '?')} images: PSNR {final['val_psnr']:.2f} dB, "
        f"SSIM {final.get('val_ssim', float('nan')):.3f} (SSIM: torchmetrics, Gaussian 11x11 window, sigma 1.5).",
        "",
    ])
    return ModelCard(f"---\n{card_metadata(cfg, model).to_yaml()}\n---\n\n{body}")


def pair_card(model: DenoisingModel, *, detector: Path, filler: Path) -> ModelCard:
    """The card of a detect-then-fill pair (`denoiser.models.detect_fill`): its two trained parts and its cuts."""
    data = ModelCardData(library_name="denoiser", license="mit", datasets=["cifar10"], metrics=["psnr", "ssim"],
                         tags=["image-denoising", "salt-and-pepper", model.architecture])
    config = model.config
    body = "\n".join([
        "# Impulse U-Net: a learned impulse detector, and the default model's U-Net to repaint what it finds", "",
        f"Architecture `{model.architecture}`, {model.parameter_count():,} parameters, assembled from two trained "
        "checkpoints, no weight retrained:", "",
        f"- detector: `{detector.name}` (the impulse U-Net, colour in one pass; its card tells how it was trained);",
        f"- filler: `{filler.name}` (the default model's U-Net, channel by channel);",
        f"- a value at exactly 0 or 1 is repainted unless the detector's logit is below {config.exact_threshold}, "
        f"any other value only when it is above {config.other_threshold}.", "",
        *(["A refiner follows, kept from the pair this one replaced: it learned the previous pair's residual, "
           "so retrain it (`python train.py --recipe moved`).", ""] if config.refiner is not None else []),
        "Published in the default model's `moved/` folder, it takes the images whose impulses moved off exact "
        "black and white (noisy JPEGs, near-extreme impulses; `denoiser/moved.py`); it is also the method "
        "`impulse`.", "",
    ])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
