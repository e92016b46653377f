"""The GPU check's figures (issue 12): training and inference speed on the GPU against the same machine's CPU.

    python -m benchmarks.gpu --data ../shared/data/cifar10-images.zip    # the offline CIFAR-10 copy
    python -m benchmarks.gpu --data synthetic --quick                      # generated images, short CPU part

`scripts/gpu_check.sh` runs it after the GPU tests. Each figure is measured on CUDA (when there is one) and
on the CPU, in this one process, one after the other:

* training: images/s of the default recipe (train.py's `RECIPES["default"]`: the switching U-Net, batches of
  64 CIFAR-sized 32x32 images) in the training steps of the run's last epoch, as `train` reports it; bf16
  autocast on the GPU (the loop's own choice), fp32 on the CPU;
* inference: images/s of `denoise_batch` on 32x32 grayscale batches of 500, input already on the device,
  the median of timed calls after a warm-up call (the benchmark's own measure);
* one `denoise()` call, numpy in and out (copies to and from the GPU included), on a 512x512 and a
  2048x2048 (4.2 MP, the app's limit) colour image with salt-and-pepper noise on 25% of its pixels;
* the app: the round trip of one /denoise request through gradio_client with a 4.2 MP colour PNG, against
  `python app.py` started in its own process (on the CPU column with CUDA hidden from it).

Peak GPU memory is `torch.cuda.max_memory_allocated` over each measurement; for the app, the server
process's GPU memory as nvidia-smi reports it (CUDA context included). The table is printed as Markdown
and written to OUT/results.md, with the figures in OUT/results.json. A figure that cannot be measured here
(no CUDA, --quick, gradio_client not installed) is shown as skipped with the reason; one that fails is
shown as failed, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BATCH = 500  # the benchmark's batch size for 32x32 inference
NOISE_AMOUNT = 0.25
LARGE_SIDE = 2048  # 2048 x 2048 = 4,194,304 pixels, the app's DENOISER_MAX_PIXELS default
MODEL_KEYS = ("default", "article")


@dataclass
class Sizes:
    """How much work each measurement does; the CPU part is cut short with --quick."""

    gpu_train_images: int = 20_000  # per epoch; two epochs, the second timed
    cpu_train_images: int = 2_000
    gpu_repeats: int = 20
    cpu_repeats: int = 3
    cpu_large_images: bool = True  # 4.2 MP on the CPU: ~17 s per call per model on 2 cores
    cpu_app_side: int = LARGE_SIDE

    @classmethod
    def quick(cls) -> Sizes:
        return cls(cpu_train_images=640, cpu_repeats=1, cpu_large_images=False, cpu_app_side=512)


@dataclass
class Cell:
    value: float | None = None  # images/s or seconds, per the row's unit
    peak_bytes: int | None = None  # GPU memory, GPU column only
    note: str = ""  # why there is no value, or what else to know

    @property
    def failed(self) -> bool:
        return self.note.startswith("failed")


@dataclass
class Row:
    label: str
    unit: str  # "images/s" (more is better) or "s" (less is better)
    gpu: Cell
    cpu: Cell


# ----------------------------------------------------------------------------- inputs


def synthetic_folder(root: Path, *, train: int, test: int, classes: int = 10) -> Path:
    """An ImageFolder of smooth random 32x32 colour images (bilinear blow-ups of 4x4 noise), PNG files."""
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", train), ("test", test)):
        low = torch.rand(n, 3, 4, 4, generator=g)
        images = torch.nn.functional.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)
        pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, C, H, W) -> (N, H, W, C)
        for i, image in enumerate(pixels):
            folder = root / split / f"class{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:05d}.png")
    return root


def photo(side: int, *, noisy: bool = True) -> np.ndarray:
    """A smooth colour picture, uint8 (side, side, 3), with noise on 25% of its pixels unless `noisy=False`."""
    from denoiser.noise import salt_and_pepper_array

    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    disc = ((x - 0.6) ** 2 + (y - 0.4) ** 2) < 0.06
    clean = np.stack([0.3 + 0.4 * x, 0.2 + 0.5 * y, 0.4 + 0.4 * disc], axis=-1)
    image = (np.clip(clean, 0, 1) * 255).round().astype(np.uint8)
    return salt_and_pepper_array(image, amount=NOISE_AMOUNT, seed=0) if noisy else image


def noisy_gray_batch(data: str) -> torch.Tensor:
    """BATCH test images, channel-mean grayscale, with salt-and-pepper noise at 0.3: float (B, 1, 32, 32)."""
    from denoiser.data import load_split, to_float, to_gray
    from denoiser.noise import salt_and_pepper

    images = to_gray(to_float(load_split(data, split="test", limit=BATCH).images))
    return salt_and_pepper(images, amount=0.3, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- measurements


def failure(err: Exception) -> Cell:
    first_line = str(err).splitlines()[0][:120] if str(err) else ""
    return Cell(note=f"failed: {type(err).__name__}: {first_line}")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measured(device: str, fn: Callable[[], float | tuple[float, str]]) -> Cell:
    """Run one measurement (a value, or a value and a note); on CUDA also record its peak memory.
    A failure becomes a cell that says so, not a crash."""
    try:
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        result = fn()
        value, note = result if isinstance(result, tuple) else (result, "")
        _sync(device)
        return Cell(value, torch.cuda.max_memory_allocated() if device == "cuda" else None, note)
    except Exception as err:  # noqa: BLE001 - one broken figure must not hide the others
        return failure(err)


def training_rate(data: str, *, device: str, images: int, epochs: int) -> float:
    """images/s of the default recipe's training steps in the last epoch (the first warms up cuDNN)."""
    import train as train_cli
    from denoiser.training import train

    with tempfile.TemporaryDirectory() as out:
        cfg = replace(train_cli.RECIPES["default"], data=data, out=out, publish=None, epochs=epochs,
                      train_limit=images, val_limit=BATCH, device=device)
        return train(cfg)["images_per_s"]


def built(key: str, device: str):
    """The method as the app and the benchmark build it; on the CPU that is ONNX Runtime when installed."""
    from denoiser.methods import METHODS

    return METHODS[key].build(device=device)


def backend_note(denoiser) -> str:
    return f"on {denoiser.backend}" if getattr(denoiser, "backend", "torch") != "torch" else ""


def inference_rate(key: str, images: torch.Tensor, *, device: str, repeats: int) -> tuple[float, str]:
    denoiser = built(key, device)
    x = images.to(device)
    denoiser.denoise_batch(x)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        denoiser.denoise_batch(x)
        _sync(device)
        times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times), backend_note(denoiser)


def image_seconds(key: str, image: np.ndarray, *, device: str, repeats: int, warm_up: bool) -> tuple[float, str]:
    denoiser = built(key, device)
    if warm_up:
        denoiser.denoise(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        denoiser.denoise(image)  # numpy back, so the GPU work has finished
        times.append(time.perf_counter() - start)
    return statistics.median(times), backend_note(denoiser)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_process_gpu_bytes(pid: int) -> int | None:
    """The GPU memory nvidia-smi reports for one process (its CUDA context included), or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 2 and fields[0] == str(pid) and fields[1].isdigit():
            return int(fields[1]) * 2**20
    return None


def app_request(side: int, *, cuda: bool, workdir: Path) -> Cell:
    """Seconds of one /denoise round trip with a clean side x side colour PNG, as a visitor sends it (the app
    adds noise, denoises, scores, writes PNGs): the median of 2, after a small warm-up request."""
    try:
        return _app_request(side, cuda=cuda, workdir=workdir)
    except Exception as err:  # noqa: BLE001 - one broken figure must not hide the others
        return failure(err)


def _app_request(side: int, *, cuda: bool, workdir: Path) -> Cell:
    from gradio_client import Client, handle_file

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1"}
    if not cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""
    log = open(workdir / f"app-{'cuda' if cuda else 'cpu'}.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with code {proc.returncode} (log: {log.name})")
            if time.monotonic() > deadline:
                raise RuntimeError("app.py did not answer within 180 s")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        client = Client(url, verbose=False)
        small, large = workdir / "small.png", workdir / f"photo-{side}.png"
        Image.fromarray(photo(64, noisy=False)).save(small)
        Image.fromarray(photo(side, noisy=False)).save(large)
        client.predict(handle_file(str(small)), "default", NOISE_AMOUNT, 0, False, api_name="/denoise")
        times, numbers = [], {}
        for seed in (1, 2):
            start = time.perf_counter()
            numbers = client.predict(handle_file(str(large)), "default", NOISE_AMOUNT, seed, False,
                                     api_name="/denoise")[4]
            times.append(time.perf_counter() - start)
        memory = app_process_gpu_bytes(proc.pid) if cuda else None
        return Cell(statistics.median(times), memory,
                    f"model {numbers['model_seconds']:.2f} s on {numbers['device']}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


# ----------------------------------------------------------------------------- the table


def gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            name, memory, driver = (f.strip() for f in out.stdout.splitlines()[0].split(","))
            return f"{name} ({memory}, driver {driver})"
    except (OSError, subprocess.TimeoutExpired, ValueError):
        pass
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA GPU"


def cpu_name() -> str:
    from denoiser.benchmark import device_name

    return device_name(torch.device("cpu"))


def _value(cell: Cell, unit: str) -> str:
    if cell.value is None:
        return cell.note or "–"
    text = f"{cell.value:,.0f} images/s" if unit == "images/s" else f"{cell.value:.3g} s"
    return f"{text} ({cell.note})" if cell.note else text


def _speedup(row: Row) -> str:
    if row.gpu.value is None or row.cpu.value is None:
        return "–"
    ratio = row.gpu.value / row.cpu.value if row.unit == "images/s" else row.cpu.value / row.gpu.value
    return f"{ratio:,.1f}×"


def _memory(cell: Cell) -> str:
    if cell.peak_bytes is None:
        return "–"
    return f"{cell.peak_bytes / 2**30:.2f} GiB" if cell.peak_bytes >= 2**30 else f"{cell.peak_bytes / 2**20:.0f} MiB"


def markdown(rows: list[Row], meta: dict) -> str:
    lines = [f"GPU: {meta['gpu']}. CPU: {meta['cpu']}, {meta['threads']} torch threads. torch {meta['torch']}, "
             f"Python {meta['python']}. Data: {meta['data']}. {meta['date']}"
             f"{', --quick (short CPU part)' if meta['quick'] else ''}.", "",
             "| measure | GPU | CPU | GPU speed-up | peak GPU memory |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.label} | {_value(r.gpu, r.unit)} | {_value(r.cpu, r.unit)} | {_speedup(r)} | {_memory(r.gpu)} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def measure(data: str, sizes: Sizes, *, cuda: bool, workdir: Path) -> list[Row]:
    no_gpu = Cell(note="skipped: no CUDA GPU")
    rows = [Row("training, default recipe, 32×32 batches of 64 (GPU bf16, CPU fp32)", "images/s",
                measured("cuda", lambda: training_rate(data, device="cuda", images=sizes.gpu_train_images, epochs=2))
                if cuda else no_gpu,
                measured("cpu", lambda: training_rate(data, device="cpu", images=sizes.cpu_train_images, epochs=2)))]
    batch = noisy_gray_batch(data)
    for key in MODEL_KEYS:
        label = "default model" if key == "default" else "article autoencoder"
        rows.append(Row(f"inference, {label}, 32×32 grayscale, batch {BATCH}", "images/s",
                        measured("cuda", lambda: inference_rate(key, batch, device="cuda", repeats=sizes.gpu_repeats))
                        if cuda else no_gpu,
                        measured("cpu", lambda: inference_rate(key, batch, device="cpu", repeats=sizes.cpu_repeats))))
    for side in (512, LARGE_SIDE):
        image = photo(side)
        for key in MODEL_KEYS:
            label = "default model" if key == "default" else "article autoencoder"
            cpu_runs = side < LARGE_SIDE or sizes.cpu_large_images
            rows.append(Row(f"one {side}×{side} colour image ({side * side / 1e6:.1f} MP), {label}", "s",
                            measured("cuda", lambda: image_seconds(key, image, device="cuda", repeats=3, warm_up=True))
                            if cuda else no_gpu,
                            measured("cpu", lambda: image_seconds(key, image, device="cpu", warm_up=side < LARGE_SIDE,
                                                                  repeats=sizes.cpu_repeats if side < LARGE_SIDE else 1))
                            if cpu_runs else Cell(note="skipped: --quick")))
    try:
        import gradio_client  # noqa: F401
    except ImportError:
        missing = Cell(note="skipped: gradio_client is not installed")
        rows.append(Row(f"app /denoise request, {LARGE_SIDE}×{LARGE_SIDE} colour PNG, gradio_client", "s",
                        missing, missing))
        return rows
    gpu_app = app_request(LARGE_SIDE, cuda=True, workdir=workdir) if cuda else no_gpu
    cpu_app = app_request(sizes.cpu_app_side, cuda=False, workdir=workdir)
    side_note = "" if sizes.cpu_app_side == LARGE_SIDE else f"; CPU column: {sizes.cpu_app_side}×{sizes.cpu_app_side}"
    rows.append(Row(f"app /denoise request, {LARGE_SIDE}×{LARGE_SIDE} colour PNG, gradio_client round trip"
                    f"{side_note}", "s", gpu_app, cpu_app))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n")[0])
    p.add_argument("--data", default="synthetic",
                   help="CIFAR-10 as train.py takes it (.zip, folder), or 'synthetic' for generated 32x32 images")
    p.add_argument("--quick", action="store_true", help="a short CPU part: fewer images, no 4.2 MP CPU runs")
    p.add_argument("--out", type=Path, default=REPO / "benchmark-results" / "gpu-check")
    args = p.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    cuda = torch.cuda.is_available()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data = args.data
        if data == "synthetic":
            n_train = max(sizes.gpu_train_images if cuda else 0, sizes.cpu_train_images)
            data = str(synthetic_folder(workdir / "synthetic", train=n_train, test=BATCH))
        elif not Path(data).exists():
            p.error(f"--data {data}: no such file or folder")
        try:
            rows = measure(data, sizes, cuda=cuda, workdir=workdir)
        except Exception as err:  # noqa: BLE001 - say what broke, with a status the script can act on
            print(f"benchmarks.gpu: failed: {type(err).__name__}: {err}", file=sys.stderr)
            return 1
    meta = {"gpu": gpu_name(), "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "data": "synthetic 32×32 images" if args.data == "synthetic"
            else args.data, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "quick": args.quick}
    table = markdown(rows, meta)
    (args.out / "results.md").write_text(table)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    print(table)
    print(f"written to {args.out / 'results.md'}")
    failed = [r.label for r in rows if r.gpu.failed or r.cpu.failed]
    if failed:
        print(f"failed measurements: {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
