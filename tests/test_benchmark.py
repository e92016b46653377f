import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from denoiser import benchmark
from denoiser.checkpoint import save_checkpoint
from denoiser.models import ArticleAutoencoder, ArticleConfig, UNetConfig, UNetDenoiser

REPO = Path(__file__).resolve().parent.parent
GRAY_NOISES = ["Article rule 0.2", "Amount 0.1", "Amount 0.3", "Amount 0.5", "Amount 0.7", "Amount 0.9"]
GRAY_METHODS = ["Noisy input", "3×3 median", "5×5 median", "Adaptive median", "Article autoencoder", "Default model",
                "Impulse U-Net"]
COLOR_METHODS = ["Noisy input", "3×3 median", "Adaptive median", "Default model", "Default, no colour fill",
                 "Impulse U-Net"]


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-like ImageFolder test split, as in the offline copy: 2 classes x 3 JPEG files (quality 75), 32x32."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / "test" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(smooth_image(rng)).save(root / "test" / cls / f"{i:04d}.jpg", quality=75)
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Tiny untrained checkpoints in the real on-disk format: (article, default model)."""
    root = tmp_path_factory.mktemp("checkpoints")
    article = save_checkpoint(ArticleAutoencoder(ArticleConfig(channels=2, latent_dim=8)), root / "article")
    model = save_checkpoint(UNetDenoiser(UNetConfig(widths=(4, 8), blocks=(1, 1))), root / "default")
    return article, model


def _run(argv: list[str]) -> dict:
    return benchmark.main([str(a) for a in argv])


def test_end_to_end_writes_every_figure(jpeg_folder: Path, checkpoints: tuple[Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    article, model = checkpoints
    _run(["--data", jpeg_folder, "--limit", 5, "--batch-size", 3, "--out", tmp_path,
          "--article", article, "--model", model])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["meta"]["images"] == 5 and results["notes"] == []

    gray = {(r["method"], r["noise"]): r for r in results["tables"]["grayscale"]}
    color = {(r["method"], r["noise"]): r for r in results["tables"]["colour"]}
    per_channel = {(r["method"], r["noise"]): r for r in results["tables"]["colour, per-channel noise"]}
    assert set(gray) == {(m, n) for m in GRAY_METHODS for n in GRAY_NOISES}
    assert set(color) == set(per_channel) == {(m, n) for m in COLOR_METHODS for n in GRAY_NOISES[1:]}
    assert {r["noise_key"] for r in per_channel.values()} == {f"per-channel-{a}" for a in (0.1, 0.3, 0.5, 0.7, 0.9)}
    # Independent channels leave most hit pixels with an intact value: the noisy images differ from per-pixel ones.
    assert color["Noisy input", "Amount 0.3"]["psnr"] != per_channel["Noisy input", "Amount 0.3"]["psnr"]
    for row in [*gray.values(), *color.values(), *per_channel.values()]:
        assert row["images"] == 5 and math.isfinite(row["psnr"]) and -1 <= row["ssim"] <= 1
        assert (row["images_per_s"] is None) == (row["method"] == "Noisy input")
    # The noisy input gets worse as the amount grows, and a filter beats it: the figures are real measurements.
    noisy_psnr = [gray["Noisy input", n]["psnr"] for n in GRAY_NOISES[1:]]
    assert noisy_psnr == sorted(noisy_psnr, reverse=True)
    assert gray["Adaptive median", "Amount 0.3"]["psnr"] > gray["Noisy input", "Amount 0.3"]["psnr"] + 10
    assert set(results["speed"]["grayscale"]) == set(GRAY_METHODS[1:])
    speeds = results["speed"]
    assert set(speeds["colour"]) == set(speeds["colour, per-channel noise"]) == set(COLOR_METHODS[1:])

    markdown = (tmp_path / "results.md").read_text()
    assert "| Noise | " + " | ".join(GRAY_METHODS) + " |" in markdown
    cell = f"{gray['Adaptive median', 'Amount 0.5']['psnr']:.2f} / {gray['Adaptive median', 'Amount 0.5']['ssim']:.3f}"
    assert cell in markdown
    assert markdown in capsys.readouterr().out


def test_figures_repeat_for_any_batch_size(jpeg_folder: Path, tmp_path: Path) -> None:
    runs = [_run(["--data", jpeg_folder, "--batch-size", size, "--out", tmp_path / str(size), "--no-color",
                  "--article", tmp_path / "none", "--model", tmp_path / "none"]) for size in (6, 4)]
    first, second = ([(r["method"], r["noise"], r["psnr"], r["ssim"]) for r in run["tables"]["grayscale"]]
                     for run in runs)
    assert first == second


@pytest.mark.slow  # 11 s in the timed suite, 23 s under load: a fresh interpreter imports torch and torchmetrics
def test_cli_skips_missing_checkpoints_with_a_note(jpeg_folder: Path, checkpoints: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    missing, partial = tmp_path / "no-such-checkpoint", tmp_path / "half-written"
    partial.mkdir()
    (partial / "config.json").write_bytes((checkpoints[1] / "config.json").read_bytes())  # weights not there yet
    result = subprocess.run(
        [sys.executable, "-m", "denoiser.benchmark", "--data", str(jpeg_folder), "--limit", "3", "--no-color",
         "--out", str(tmp_path / "out"), "--article", str(missing), "--model", str(partial)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["notes"] == [f"Article autoencoder skipped: no checkpoint at {missing}",
                                f"Default model skipped: no checkpoint at {partial}"]
    assert {r["method"] for r in results["tables"]["grayscale"]} == {*GRAY_METHODS[:4], "Impulse U-Net"}
    assert "colour" not in results["tables"]
    assert f"- Default model skipped: no checkpoint at {partial}" in result.stdout
    assert "Grayscale" in result.stderr  # the progress bar


@pytest.mark.parametrize("argv, message", [
    (["--limit", "0"], "--limit must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--device", "toaster"], "is not a torch device"),
])
def test_bad_arguments_are_usage_errors(jpeg_folder: Path, argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _run(["--data", jpeg_folder, *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unreadable_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="error: .*expected a .zip or folder"):
        _run(["--data", tmp_path / "nothing-here", "--out", tmp_path / "out"])
    assert not (tmp_path / "out").exists()
