"""GPU readiness (issue 12): inference, bf16 training, the benchmark and torchrun with nccl, on CUDA.

Every test here needs a CUDA GPU and is skipped without one; `bash scripts/gpu_check.sh` runs them on a GPU
machine and then measures speed. Tolerances of the CUDA-vs-CPU comparisons:

* strict fp32 (TF32 switched off) against PyTorch on the CPU: max |CUDA - CPU| <= 1e-4 on every pixel;
* PyTorch's default CUDA settings, as the app and the benchmark run (cuDNN may use TF32 for convolutions,
  10-bit mantissa), against the CPU result users get (`METHODS[key].build(device="cpu")`, ONNX Runtime
  when it is installed): max |diff| <= 0.02 (5 grey levels of 255) and mean |diff| <= 1e-3.

The switching U-Net decides which pixels to repaint from exact 0/1 values and integer window counts, so
both devices repaint the same pixels and only the network's arithmetic differs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, write_image_folder

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="CUDA is not available: GPU tests run on a GPU machine via scripts/gpu_check.sh"),
]

STRICT_MAX = 1e-4
DEFAULT_MAX, DEFAULT_MEAN = 0.02, 1e-3
MODELS = ("default", "article")
TINY_UNET = {"widths": [8, 16], "blocks": [1, 1]}


@contextmanager
def strict_fp32() -> Iterator[None]:
    """Plain fp32 arithmetic on the GPU: no TF32 in cuDNN convolutions or cuBLAS matrix products."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def noisy_images(batch: int, channels: int, height: int, width: int, *, seed: int = 0) -> torch.Tensor:
    """Smooth random pictures with salt-and-pepper noise at amount 0.3, float (B, C, H, W) on the CPU."""
    from denoiser.noise import salt_and_pepper

    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, channels, max(2, height // 64), max(2, width // 64), generator=g)
    clean = torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
    return salt_and_pepper(clean, amount=0.3, generator=g)


def build(key: str, device: str):
    from denoiser.methods import METHODS

    return METHODS[key].build(device=device)


def torch_on_cpu(key: str):
    from denoiser.inference import ARTICLE_CHECKPOINT, DEFAULT_CHECKPOINT, load_denoiser

    return load_denoiser(DEFAULT_CHECKPOINT if key == "default" else ARTICLE_CHECKPOINT, device="cpu",
                         backend="torch")


def compare(key: str, images: torch.Tensor) -> tuple[float, float, float]:
    """(strict max, default max, default mean) of |CUDA - CPU| for one model on `images`."""
    gpu = build(key, "cuda")
    assert gpu.device.type == "cuda"
    default_diff = (gpu.denoise_batch(images.cuda()).cpu() - build(key, "cpu").denoise_batch(images)).abs()
    with strict_fp32():
        strict_out = gpu.denoise_batch(images.cuda()).cpu()
    strict = (strict_out - torch_on_cpu(key).denoise_batch(images)).abs().max().item()
    return strict, default_diff.max().item(), default_diff.mean().item()


@pytest.mark.parametrize("key", MODELS)
def test_cuda_matches_the_cpu_at_32x32(key: str) -> None:
    strict, worst, mean = compare(key, noisy_images(64, 1, 32, 32))
    assert strict <= STRICT_MAX, f"{key}: strict fp32 max |diff| {strict:.2e}"
    assert worst <= DEFAULT_MAX and mean <= DEFAULT_MEAN, f"{key}: default max {worst:.2e}, mean {mean:.2e}"


@pytest.mark.parametrize("key", MODELS)
def test_cuda_matches_the_cpu_on_a_tiled_colour_image(key: str) -> None:
    images = noisy_images(1, 3, 1300, 1500, seed=1)  # above 512x512: the default model runs in tiles
    if key == "default":
        assert 1300 * 1500 > build(key, "cpu").tile_size ** 2
    strict, worst, mean = compare(key, images)
    assert strict <= STRICT_MAX, f"{key}: strict fp32 max |diff| {strict:.2e}"
    assert worst <= DEFAULT_MAX and mean <= DEFAULT_MEAN, f"{key}: default max {worst:.2e}, mean {mean:.2e}"


@contextmanager
def host_round_trips() -> Iterator[list[str]]:
    """Collects every copy between host and GPU, and every synchronising CUDA call, made inside the block.

    Two independent detectors: CUDA's own copy records (the profiler's "Memcpy HtoD/DtoH" events) and
    PyTorch's sync debug mode, which warns on each call that makes the host wait for the GPU (a `.cpu()`,
    `.item()`, a blocking copy from pageable memory).
    """
    from torch.profiler import ProfilerActivity, profile

    found: list[str] = []
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield found
            finally:
                torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()
    found += [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    found += [e.name for e in prof.events() if "Memcpy HtoD" in e.name or "Memcpy DtoH" in e.name]


def test_the_round_trip_detector_sees_a_planted_copy() -> None:
    x = torch.rand(8, device="cuda")
    with host_round_trips() as found:
        (x.cpu() + 1).cuda()
    assert any("DtoH" in f for f in found) and any("HtoD" in f for f in found), found
    assert any("synchroniz" in f for f in found), found


@pytest.mark.parametrize("key", MODELS)
@pytest.mark.parametrize("shape", [(500, 1, 32, 32), (1, 3, 1300, 1500)], ids=["32x32", "tiled-1500x1300"])
def test_denoise_batch_stays_on_the_device(key: str, shape: tuple[int, ...]) -> None:
    denoiser = build(key, "cuda")
    images = noisy_images(*shape).cuda()
    denoiser.denoise_batch(images)  # warm-up: cuDNN picks its kernels on the first call
    torch.cuda.synchronize()
    with host_round_trips() as found:
        out = denoiser.denoise_batch(images)
    assert found == [], f"{key} {shape}: host round trips inside denoise_batch: {found}"
    assert out.device == images.device and out.dtype == images.dtype and out.shape == images.shape


def test_bf16_training_lowers_the_loss_and_the_checkpoint_reloads_on_the_cpu(image_folder: Path, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    import train as train_cli
    from denoiser.inference import load_denoiser
    from denoiser.training import train

    assert torch.cuda.is_bf16_supported(), "this GPU has no bf16: training would run in fp32"
    out = tmp_path / "run"
    # The default recipe (per-image PSNR loss, amounts 0-0.95) on a tiny U-Net, as tests/test_training.py runs it.
    train(replace(train_cli.RECIPES["default"], model_config=TINY_UNET, data=str(image_folder), out=str(out),
                  publish=None, epochs=3, batch_size=8, lr=3e-3, device="cuda"))
    assert "bfloat16" in capsys.readouterr().out  # the run's header names its autocast dtype
    history = json.loads((out / "history.json").read_text())
    assert all(h["device"].startswith("cuda") for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"], history
    assert history[-1]["val_loss"] < history[0]["val_loss"], history

    images = noisy_images(16, 1, 32, 32, seed=2)
    on_cpu = load_denoiser(out / "checkpoint", device="cpu", backend="torch")
    assert all(p.device.type == "cpu" for p in on_cpu.model.parameters())
    cpu_out = on_cpu.denoise_batch(images)
    assert torch.isfinite(cpu_out).all()
    as_users_get_it = load_denoiser(out / "checkpoint", device="cpu").denoise_batch(images)  # ONNX when it can
    assert (as_users_get_it - cpu_out).abs().max().item() <= STRICT_MAX
    with strict_fp32():
        gpu_out = load_denoiser(out / "checkpoint", device="cuda").denoise_batch(images.cuda()).cpu()
    assert (gpu_out - cpu_out).abs().max().item() <= STRICT_MAX


def run_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_the_benchmark_runs_with_device_cuda(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "data", per_class={"train": 1, "test": 8})
    result = subprocess.run([sys.executable, "-m", "denoiser.benchmark", "--data", str(data), "--limit", "20",
                             "--device", "cuda", "--out", str(tmp_path / "out")],
                            cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["meta"]["device"].startswith("cuda") and results["meta"]["images"] == 20
    speeds = results["speed"]["grayscale"]
    assert speeds and all(v > 0 for v in speeds.values()), speeds


def test_torchrun_one_process_trains_one_epoch_on_cuda(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "train.py",
         "--data", str(image_folder), "--out", str(out), "--epochs", "1", "--batch-size", "8", "--device", "cuda",
         "--arch", "unet", "--widths", "8", "16", "--blocks", "1", "1", "--no-publish"],
        cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "1 process(es)" in log and "cuda" in log
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and history[0]["device"].startswith("cuda") and np.isfinite(history[0]["train_loss"])
    assert (out / "checkpoint" / "model.safetensors").is_file()


NCCL_STEP = '''
import os, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from denoiser.architectures import build_model
from denoiser.training import image_loss

dist.init_process_group(backend="nccl")
rank = int(os.environ["LOCAL_RANK"])
torch.cuda.set_device(rank)
model = build_model("unet", {"widths": [8, 16], "blocks": [1, 1]}).cuda()
net = DistributedDataParallel(model, device_ids=[rank])
x = torch.rand(8, 1, 32, 32, device="cuda")
with torch.autocast("cuda", dtype=torch.bfloat16):
    loss = image_loss(net(x).float(), x, kind="mse")
loss.backward()
total = torch.ones(1, device="cuda")
dist.all_reduce(total)
print("backend", dist.get_backend(), "world", dist.get_world_size(), "sum", total.item(), flush=True)
dist.destroy_process_group()
'''


def test_torchrun_nccl_process_group_runs_a_ddp_bf16_step(tmp_path: Path) -> None:
    """The nccl path of training (DistributedDataParallel over nccl, bf16 autocast) with one real process.

    `train` only makes a process group when torchrun starts more than one process, so with one GPU this is
    where nccl itself gets exercised.
    """
    script = tmp_path / "nccl_step.py"
    script.write_text(NCCL_STEP)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                             str(script)], cwd=ROOT, env={**run_env(), "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "backend nccl world 1 sum 1.0" in result.stdout
