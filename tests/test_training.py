"""Training end to end: a tiny run learns, publishing follows its rules, the push uploads the folder as saved,
a killed run resumes from its folder alone (exactly, or from the start when it had no resume point yet),
and torchrun runs two processes."""

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train
from conftest import ROOT
from denoiser.checkpoint import is_checkpoint, load_model, read_card

TINY = ["--arch", "unet", "--widths", "8", "16", "--blocks", "1", "1"]


def run_env() -> dict:
    # One thread: deterministic CPU kernels, and two test processes do not fight over two cores.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--batch-size", "8", *TINY, *extra]


@pytest.fixture
def recipe_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The default recipe, 2 epochs long, publishing into tmp_path: a broken rule cannot touch checkpoints/."""
    publish = tmp_path / "published"
    monkeypatch.setitem(train.RECIPES, "default", replace(train.RECIPES["default"], publish=str(publish), epochs=2))
    return publish


def test_tiny_run_learns_and_writes_everything(image_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert train.main(tiny_args(image_folder, out, "--epochs", "3", "--lr", "3e-3", "--no-publish")) == 0
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    for name in ("epoch_001.png", "epoch_003.png", "loss.png", "psnr.png", "resume.pt", "train_config.json",
                 "checkpoint/model.safetensors", "checkpoint/config.json", "checkpoint/README.md"):
        assert (out / name).is_file(), name
    card = read_card(out / "checkpoint")
    assert card.data.library_name == "denoiser" and "unet" in card.data.tags
    assert f"PSNR {history[-1]['val_psnr']:.2f} dB" in card.text
    assert f"checkpoint written to {out / 'checkpoint'} (not published: --no-publish" in capsys.readouterr().out


def test_an_existing_run_is_never_overwritten_and_resume_keeps_its_settings(image_folder: Path, tmp_path: Path,
                                                                           capsys) -> None:
    out = tmp_path / "run"
    args = tiny_args(image_folder, out, "--epochs", "1", "--train-limit", "24", "--val-limit", "6", "--no-publish")
    assert train.main(args) == 0
    assert train.main(args) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert train.main(["--out", str(out), "--resume", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "differ from the run" in err and ": lr." in err and "--epochs" in err
    assert train.main(["--out", str(out), "--resume", "--train-limit", "12"]) == 2
    assert "train_limit" in capsys.readouterr().err
    # The folder alone, with a longer run asked for: every other setting comes from train_config.json.
    assert train.main(["--out", str(out), "--resume", "--epochs", "2"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [(h["epoch"], h["train_images"], h["val_images"]) for h in history] == [(1, 24, 6), (2, 24, 6)]
    assert json.loads((out / "train_config.json").read_text())["train_limit"] == 24
    assert train.main(["--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "holds no run to resume" in capsys.readouterr().err


def test_publish_rules(recipe_in_tmp: Path, image_folder: Path, tmp_path: Path) -> None:
    def decision(*argv: str) -> tuple[str | None, str]:
        cfg = train.config_from_args(train.parse_args(list(argv)), list(argv))
        return cfg.publish, cfg.publish_skipped

    assert decision() == (str(recipe_in_tmp), "")
    assert decision("--epochs", "5") == (str(recipe_in_tmp), "")
    assert decision("--train-limit", "2000") == (None, "--train-limit was set")
    assert decision("--val-limit", "500", "--epochs", "1") == (
        None, "--val-limit was set, --epochs 1 is below the default recipe's 2")
    assert decision("--train-limit", "2000", "--publish", "elsewhere") == ("elsewhere", "")
    assert decision("--no-publish") == (None, "--no-publish")
    with pytest.raises(SystemExit):
        train.parse_args(["--publish", "x", "--no-publish"])
    recipe = train.RECIPES["article"]
    article = train.config_from_args(train.parse_args(["--recipe", "article", "--epochs", "3"]), [])
    assert article.publish is None and f"below the article recipe's {recipe.epochs}" in article.publish_skipped
    # The default must not leave a long run without a resume point for more than a few minutes.
    cfg = train.config_from_args(train.parse_args([]), [])
    assert cfg.save_minutes <= 5 and cfg.save_every is None


def test_a_quick_run_does_not_publish_and_a_full_one_does(recipe_in_tmp: Path, image_folder: Path,
                                                          tmp_path: Path, capsys) -> None:
    quick = tmp_path / "quick"
    assert train.main(tiny_args(image_folder, quick, "--train-limit", "24")) == 0
    assert not recipe_in_tmp.exists()
    assert (f"checkpoint written to {quick / 'checkpoint'} (not published: --train-limit was set; "
            "pass --publish DIR to publish)") in capsys.readouterr().out
    assert train.main(tiny_args(image_folder, tmp_path / "full")) == 0
    assert is_checkpoint(recipe_in_tmp)
    assert f"published {tmp_path / 'full' / 'checkpoint'} -> {recipe_in_tmp}" in capsys.readouterr().out
    # The default model's moved/ pair is assembled again around the U-Net just published (the detector: the
    # impulse recipe's published one).
    pair, fresh = load_model(recipe_in_tmp / "moved"), load_model(recipe_in_tmp).state_dict()
    assert all(torch.allclose(v, fresh[k], atol=1e-2) for k, v in pair.filler.state_dict().items())  # fp16 copy


def test_explicit_publish_writes_where_the_app_loads(image_folder: Path, tmp_path: Path) -> None:
    publish = tmp_path / "checkpoints" / "default"
    out = tmp_path / "run"
    assert train.main(tiny_args(image_folder, out, "--epochs", "1", "--train-limit", "24", "--publish",
                                str(publish))) == 0
    published, trained = load_model(publish), load_file(str(out / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(v, trained[k]) for k, v in published.state_dict().items())


def test_push_uploads_the_checkpoint_folder_as_saved(image_folder: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(
        ("upload", kw["repo_id"], sorted(p.name for p in Path(kw["folder_path"]).iterdir()), Path(kw["folder_path"]))))
    publish = tmp_path / "pub"
    assert train.main(tiny_args(image_folder, tmp_path / "run", "--epochs", "1", "--train-limit", "12", "--half",
                                "--publish", str(publish), "--push-to-hub", "me/denoiser")) == 0
    assert calls[0] == ("create", "me/denoiser", {"exist_ok": True})
    _, repo, files, folder = calls[1]
    assert repo == "me/denoiser" and folder == publish
    assert {"README.md", "config.json", "model.safetensors"} <= set(files)
    assert {v.dtype for v in load_file(str(publish / "model.safetensors")).values()} == {torch.float16}
    assert "pushed" in capsys.readouterr().out

    calls.clear()  # not published: the run's own checkpoint folder goes up
    assert train.main(tiny_args(image_folder, tmp_path / "run2", "--epochs", "1", "--train-limit", "12",
                                "--no-publish", "--push-to-hub", "me/denoiser")) == 0
    assert calls[1][3] == tmp_path / "run2" / "checkpoint"

    calls.clear()  # a bad repo id is refused before any training
    assert train.main(tiny_args(image_folder, tmp_path / "run3", "--push-to-hub", "not a repo/")) == 2
    assert "--push-to-hub" in capsys.readouterr().err and not calls and not (tmp_path / "run3").exists()


def test_time_based_resume_points(image_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert train.main(tiny_args(image_folder, out, "--epochs", "1", "--save-minutes", "1e-6", "--no-publish")) == 0
    assert "saved resume state: epoch 1 step 1\n" in capsys.readouterr().out


@pytest.mark.slow
def test_kill_after_a_resume_point_then_resume_from_the_folder_alone(image_folder: Path, tmp_path: Path) -> None:
    """A quick run (limits, tiny model) killed mid-epoch, continued by `--out DIR --resume` alone, ends with
    exactly the weights of the same run left alone."""
    def cmd(out: Path) -> list[str]:
        return [sys.executable, "train.py", *tiny_args(image_folder, out, "--epochs", "2", "--batch-size", "4",
                                                       "--train-limit", "36", "--val-limit", "6", "--save-every", "3",
                                                       "--no-publish")]

    proc = subprocess.Popen(cmd(tmp_path / "killed"), cwd=ROOT, env=run_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    first_output = []
    for line in proc.stdout:
        first_output.append(line)
        if "saved resume state: epoch 1 step" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "history.json").exists(), "killed after the first epoch ended, not mid-epoch"
    # The bar shows the loss from the first step on (drawn before tqdm counts that step), never looking frozen.
    assert re.search(r"epoch 1/2: .* [01]/9 .*loss=-?\d", "".join(first_output)), "".join(first_output)

    resumed = subprocess.run([sys.executable, "train.py", "--out", str(tmp_path / "killed"), "--resume"], cwd=ROOT,
                             env=run_env(), capture_output=True, text=True)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log
    assert "resuming from" in log and "train 36 images, validation 6 images" in log

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same kernels as the subprocesses' OMP_NUM_THREADS=1, so weights match bitwise
    try:
        assert train.main(cmd(tmp_path / "straight")[2:]) == 0
    finally:
        torch.set_num_threads(threads)
    straight = load_file(str(tmp_path / "straight" / "checkpoint" / "model.safetensors"))
    again = load_file(str(tmp_path / "killed" / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(straight[k], again[k]) for k in straight)
    history = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and history[0]["partial_epoch"]


def test_kill_before_the_first_resume_point_then_resume_starts_over(image_folder: Path, tmp_path: Path,
                                                                   capsys) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "train.py", *tiny_args(image_folder, out, "--epochs", "2",
                                                                    "--train-limit", "24", "--no-publish")],
                            cwd=ROOT, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "decode" in line:  # the settings are written; loading the data has only begun
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (out / "train_config.json").is_file() and not (out / "resume.pt").exists()

    assert train.main(["--out", str(out), "--resume"]) == 0
    assert "has no resume point yet" in capsys.readouterr().out
    history = json.loads((out / "history.json").read_text())
    assert [(h["epoch"], h["train_images"], h["partial_epoch"]) for h in history] == [(1, 24, False), (2, 24, False)]


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
         *tiny_args(image_folder, out, "--epochs", "2", "--device", "cpu", "--save-every", "2", "--no-publish")],
        cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "2 process(es)" in log and "3 steps/epoch" in log  # 48 images / 2 ranks / batch 8
    assert log.count("epoch 2/2 |") == 1  # only rank 0 logs
    assert log.count("saved resume state: epoch 1 step 2") == 1  # both ranks saved together, rank 0 wrote
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

    # Bounded even if the check ever let it through: one epoch of a tiny model on a few images.
    cfg = TrainConfig(data=str(image_folder), out=str(tmp_path / "run"), loss="l1", epochs=1, train_limit=6,
                      val_limit=3, model_config={"widths": [8, 16], "blocks": [1, 1]})
    with pytest.raises(ValueError, match="loss must be one of mse, psnr"):
        run(cfg)
    with pytest.raises(ValueError, match="save_minutes must be above 0"):
        run(replace(cfg, loss="mse", save_minutes=0))
    assert not (tmp_path / "run").exists()


def test_focus_flag_reaches_the_noise_recipe_and_bad_values_are_refused(image_folder: Path, tmp_path: Path,
                                                                        capsys) -> None:
    argv = ["--focus", "0.2", "0.5", "0.8"]
    noise = train.config_from_args(train.parse_args(argv), argv).noise
    assert (noise.focus_share, noise.focus_min, noise.focus_max) == (0.2, 0.5, 0.8)
    bounded = tiny_args(image_folder, tmp_path / "run", "--epochs", "1", "--train-limit", "6", "--val-limit", "3",
                        "--no-publish")
    assert train.main(["--focus", "0.5", "0.9", "0.4", *bounded]) == 2
    assert "focus_min <= focus_max" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_one_process_torchrun_joins_a_process_group(image_folder: Path, tmp_path: Path) -> None:
    # One GPU under torchrun must run the real DDP path (nccl there, gloo here), not the plain one.
    out = tmp_path / "one"
    code = ("import torch.distributed as dist, train\n"
            "from torch.nn.parallel import DistributedDataParallel as DDP\n"
            "wrapped = []\n"
            "orig = DDP.__init__\n"
            "def spy(self, *a, **k):\n"
            "    wrapped.append(dist.get_backend())\n"
            "    orig(self, *a, **k)\n"
            "DDP.__init__ = spy\n"
            f"assert train.main({tiny_args(image_folder, out, '--epochs', '1', '--device', 'cpu', '--no-publish')!r}) == 0\n"
            "print('DDP backends', wrapped)\n")
    script = tmp_path / "one.py"
    script.write_text(code)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                             str(script)], cwd=ROOT, env={**run_env(), "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "DDP backends ['gloo']" in log and "1 process(es)" in log
