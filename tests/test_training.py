"""Training end to end: a tiny run learns, a killed run resumes exactly, and torchrun runs two processes."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train
from conftest import ROOT

TINY = ["--arch", "unet", "--widths", "8", "16", "--blocks", "1", "1", "--no-publish"]


def run_env() -> dict:
    # One thread: deterministic CPU kernels, and two test processes do not fight over two cores.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_tiny_run_learns_and_writes_everything(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train.main(["--data", str(image_folder), "--out", str(out), "--epochs", "3", "--batch-size", "8",
                       "--lr", "3e-3", *TINY]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    for name in ("epoch_001.png", "epoch_003.png", "loss.png", "psnr.png", "resume.pt", "checkpoint/model.safetensors",
                 "checkpoint/config.json", "checkpoint/README.md"):
        assert (out / name).is_file(), name
    assert "PSNR" in (out / "checkpoint" / "README.md").read_text()


def test_an_existing_run_is_never_overwritten(image_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["--data", str(image_folder), "--out", str(out), "--epochs", "1", "--batch-size", "16", *TINY]
    assert train.main(args) == 0
    assert train.main(args) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert train.main([*args, "--resume", "--lr", "0.5"]) == 2
    assert "differ from the run" in capsys.readouterr().err
    assert train.main(["--data", str(image_folder), "--out", str(tmp_path / "none"), "--resume", *TINY]) == 2


def test_publish_writes_where_the_app_loads(image_folder: Path, tmp_path: Path) -> None:
    publish = tmp_path / "checkpoints" / "default"
    args = ["--data", str(image_folder), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "16",
            "--arch", "unet", "--widths", "8", "16", "--blocks", "1", "1", "--publish", str(publish)]
    assert train.main(args) == 0
    from denoiser import load_denoiser

    assert load_denoiser(publish, device="cpu").name == "Default model"


def test_resume_after_a_kill_mid_epoch_matches_an_uninterrupted_run(image_folder: Path, tmp_path: Path) -> None:
    def cmd(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "train.py", "--data", str(image_folder), "--out", str(out), "--epochs", "2",
                "--batch-size", "4", "--save-every", "3", *TINY, *extra]

    subprocess.run(cmd(tmp_path / "straight"), cwd=ROOT, env=run_env(), check=True, capture_output=True)

    proc = subprocess.Popen(cmd(tmp_path / "killed"), cwd=ROOT, env=run_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "saved resume state: epoch 1 step" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "history.json").exists(), "killed after the first epoch ended, not mid-epoch"

    resumed = subprocess.run(cmd(tmp_path / "killed", "--resume"), cwd=ROOT, env=run_env(), capture_output=True,
                             text=True, check=True)
    assert "resuming from" in resumed.stdout + resumed.stderr
    straight = load_file(str(tmp_path / "straight" / "checkpoint" / "model.safetensors"))
    again = load_file(str(tmp_path / "killed" / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(straight[k], again[k]) for k in straight)
    history = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and history[0]["partial_epoch"]


def test_torchrun_two_processes_on_cpu(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
         "--data", str(image_folder), "--out", str(out), "--epochs", "2", "--batch-size", "8", "--device", "cpu",
         *TINY], cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "2 process(es)" in log and "3 steps/epoch" in log  # 48 images / 2 ranks / batch 8
    assert log.count("epoch 2/2 |") == 1  # only rank 0 logs
    history = json.loads((out / "history.json").read_text())
    # The default recipe's loss is in dB (minus PSNR): two tiny epochs must not end more than 1 dB worse.
    assert history[-1]["world"] == 2 and history[-1]["train_loss"] < history[0]["train_loss"] + 1.0
    assert (out / "checkpoint" / "model.safetensors").is_file()


def test_psnr_loss_is_minus_the_mean_per_image_psnr() -> None:
    from denoiser.metrics import psnr
    from denoiser.training import image_loss

    torch.manual_seed(0)
    target = torch.rand(3, 1, 16, 16)
    sigma = torch.tensor([0.05, 0.1, 0.2]).view(3, 1, 1, 1)  # MSEs far above the loss floor
    output = target + sigma * torch.randn_like(target)
    loss = image_loss(output, target, kind="psnr")
    assert loss.item() == pytest.approx(-psnr(output, target).mean().item(), abs=0.05)
    assert torch.equal(image_loss(output, target, kind="mse"), torch.nn.functional.mse_loss(output, target))


def test_unknown_loss_is_refused(image_folder: Path, tmp_path: Path) -> None:
    from denoiser.training import TrainConfig, train as run

    with pytest.raises(ValueError, match="loss must be one of mse, psnr"):
        run(TrainConfig(data=str(image_folder), out=str(tmp_path / "run"), loss="l1"))
    assert not (tmp_path / "run").exists()


def test_focus_flag_reaches_the_noise_recipe_and_bad_values_are_refused(capsys) -> None:
    argv = ["--focus", "0.2", "0.5", "0.8"]
    noise = train.config_from_args(train.parse_args(argv), argv).noise
    assert (noise.focus_share, noise.focus_min, noise.focus_max) == (0.2, 0.5, 0.8)
    assert train.main(["--focus", "0.5", "0.9", "0.4", "--no-publish"]) == 2
    assert "focus_min <= focus_max" in capsys.readouterr().err
