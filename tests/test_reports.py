"""The run's pictures, plots and card: labelled as the article draws them, readable for one epoch, a Hub card."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from denoiser import reports
from denoiser.architectures import build_model
from denoiser.checkpoint import read_card, save_checkpoint
from denoiser.training import TrainConfig

CLASSES = ["airplane", "cat", "ship"]


def rows(channels: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {name: torch.rand(3, channels, 8, 8, generator=gen) for name in ("noisy", "denoised", "clean")}


@pytest.mark.parametrize("channels", [1, 3])
def test_epoch_grid_labels_rows_and_classes_and_shows_the_images(channels: int) -> None:
    images = rows(channels)
    fig = reports.epoch_grid_figure(**images, classes=CLASSES)
    axes = fig.axes
    assert [ax.get_title() for ax in axes[:3]] == CLASSES
    assert [axes[3 * r].get_ylabel() for r in range(3)] == ["noisy", "denoised", "clean"]
    shown = axes[3 + 2].get_images()[0].get_array()  # row "denoised", column "ship"
    expected = images["denoised"][2].permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
    assert torch.allclose(torch.as_tensor(shown.data).reshape(expected.shape).float(), expected)
    with pytest.raises(ValueError, match="one image per class"):
        reports.epoch_grid_figure(**images, classes=CLASSES[:2])


def test_grid_and_plots_are_written_as_pngs(tmp_path: Path) -> None:
    reports.save_epoch_grid(tmp_path / "epoch_001.png", **rows(1), classes=CLASSES)
    history = [{"epoch": 1, "train_loss": -20.0, "val_loss": -22.0, "val_psnr": 22.0}]
    reports.save_plots(tmp_path, history=history, curve=[[0.5, -19.0], [1.0, -21.0]], loss="psnr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_001.png", "loss.png", "psnr.png"]  # no temp left
    for name in ("epoch_001.png", "loss.png", "psnr.png"):
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and min(im.size) > 100


def test_a_one_epoch_run_plots_a_curve_on_an_integer_epoch_axis() -> None:
    history = [{"epoch": 1, "train_loss": 0.02, "val_loss": 0.015, "val_psnr": 25.0}]
    curve = [[(i + 1) / 20, 0.05 - i / 1000] for i in range(20)]
    fig = reports.loss_figure(history, curve, loss="mse")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert len(lines["train loss (within epochs)"].get_xdata()) == 20
    assert list(lines["val loss"].get_xdata()) == [1]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks == [0, 1]
    assert ax.get_ylabel() == "MSE"
    psnr = reports.psnr_figure(history).axes[0]
    assert [t.get_text() for t in psnr.texts] == ["25.00 dB"]


def test_model_card_is_a_hub_card_that_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    model = build_model("unet", {"widths": [8, 16], "blocks": [1, 1]})
    cfg = TrainConfig(data="/data/cifar10-images.zip", epochs=1, card_title="Test denoiser",
                      command="python train.py --epochs 1")
    history = [{"epoch": 1, "train_images": 100, "val_images": 20, "device": "cpu", "seconds": 3.0}]
    card = reports.model_card(cfg, model=model, history=history, final={"val_psnr": 27.123, "val_ssim": 0.9})
    assert card.data.library_name == "denoiser" and card.data.license == "mit"
    assert card.data.datasets == ["cifar10"] and "unet" in card.data.tags
    assert "# Test denoiser" in card.text and "PSNR 27.12 dB, SSIM 0.900" in card.text
    assert "`python train.py --epochs 1`" in card.text and "1 epoch," in card.text
    save_checkpoint(model, tmp_path / "ckpt", card=card)
    again = read_card(tmp_path / "ckpt")
    assert again.data.to_dict() == card.data.to_dict() and again.text == card.text
    other = reports.model_card(TrainConfig(data="/photos"), model=model, history=history, final={"val_psnr": 1.0})
    assert other.data.datasets is None


def test_cards_show_the_paths_of_the_repository_and_beside_it_relative(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "machine" / "main"
    (repo / "checkpoints").mkdir(parents=True)
    monkeypatch.chdir(repo)
    assert reports.shown_path(str(repo / "checkpoints" / "default")) == "checkpoints/default"
    assert reports.shown_path(str(tmp_path / "machine" / "shared" / "data.zip")) == "../shared/data.zip"
    assert reports.shown_path(str(tmp_path / "elsewhere.zip")) == str(tmp_path / "elsewhere.zip")
    assert reports.shown_path("cifar10") == "cifar10" and reports.shown_path(None) is None
    model = build_model("unet", {"widths": [8, 16], "blocks": [1, 1]})
    cfg = TrainConfig(data=str(tmp_path / "machine" / "shared" / "cifar.zip"), init_from=str(repo / "checkpoints"))
    history = [{"epoch": 1, "train_images": 10, "val_images": 2, "device": "cpu", "seconds": 1.0}]
    text = reports.model_card(cfg, model=model, history=history, final={"val_psnr": 1.0}).text
    assert "`../shared/cifar.zip`" in text and "weights of `checkpoints`." in text and str(tmp_path) not in text
