"""Benchmark: a checkpoint on ONNX Runtime against PyTorch, in one run, on the same inputs (issue 13).

Cases, each through `denoise_batch` as the app and the benchmark call it (padding, tiling, colour folding
and the default model's colour fill included, the same torch code for both backends): a batch of 500
32x32 colour images and the same in grayscale, as the CIFAR-10 benchmark runs them; one 512x512 colour
photo; one 2048x2048 colour photo, which runs in tiles. The images are scikit-image's astronaut (enlarged
to 2048x2048 with Lanczos, and cut into 500 random 32x32 crops), with salt-and-pepper noise at amount 0.5,
fixed seed.

The backends (torch, then `--backends`: float ONNX Runtime and the checkpoint's int8 graph by default,
`denoiser.quantize`) are loaded from the same checkpoint and timed alternately, run by run, so that a machine
shared with other work slows all alike; the table gives, for each ONNX backend, the median of `--runs` timed
runs after one warm-up, the speed-up over torch (of the medians), the lowest and highest speed-up of single
runs (each run times the backends back to back, so the spread shows how much the machine drifted within
the command), and the largest difference from torch's output. ONNX Runtime uses as many
intra-op threads as torch (`torch.get_num_threads()`).

    python -m benchmarks.onnx_speed --runs 5 [--checkpoint DIR] [--cases 32x32-colour 512-colour ...]
                                    [--backends onnx onnx-int8] [--no-colour-fill]
                                    [--compare-rev REV | --compare DIR]

`--compare-rev REV` (the default model of an earlier commit, `git show`) or `--compare DIR` adds that
checkpoint, on the first of `--backends`, to the same alternation, with the checkpoint's speed-up over it on
that backend: how issue 9's
speed target (the new default model against the previous one) is measured.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from denoiser import DEFAULT_CHECKPOINT, load_denoiser
from denoiser.imaging import array_to_tensor
from denoiser.interface import Denoiser
from denoiser.noise import salt_and_pepper
from denoiser.photo_benchmark import checkpoint_from_git
from denoiser.runners import ByChannels, ByImpulses


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _crops(image: np.ndarray, *, n: int, size: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    ys, xs = rng.integers(0, h - size, n), rng.integers(0, w - size, n)
    return torch.stack([array_to_tensor(image[y:y + size, x:x + size]) for y, x in zip(ys, xs)])


def cases() -> dict[str, Callable[[], torch.Tensor]]:
    """Name -> a function making the clean (B, C, H, W) batch in [0, 1]."""
    def big() -> torch.Tensor:
        image = Image.fromarray(_astronaut()).resize((2048, 2048), Image.Resampling.LANCZOS)
        return array_to_tensor(np.asarray(image)).unsqueeze(0)  # (C, H, W) -> (1, C, H, W)

    return {
        "32x32-colour": lambda: _crops(_astronaut(), n=500, size=32, seed=0),
        "32x32-gray": lambda: _crops(_astronaut(), n=500, size=32, seed=0).mean(dim=1, keepdim=True),
        "512-colour": lambda: array_to_tensor(_astronaut()).unsqueeze(0),  # (C, H, W) -> (1, C, H, W)
        "2048-colour": big,
    }


LABELS = {"32x32-colour": "32×32 colour, batch of 500", "32x32-gray": "32×32 gray, batch of 500",
          "512-colour": "512×512 colour, 1 image", "2048-colour": "2048×2048 colour, 1 image (tiled)"}


def time_all(denoisers: dict[str, Denoiser], noisy: torch.Tensor,
             *, runs: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds per denoiser and run (alternating, after a warm-up each), and each one's largest output difference
    from the torch backend's."""
    outputs = {name: d.denoise_batch(noisy) for name, d in denoisers.items()}  # warm-up, kept for the comparison
    seconds: dict[str, list[float]] = {name: [] for name in denoisers}
    for _ in range(runs):
        for name, d in denoisers.items():
            tic = time.perf_counter()
            d.denoise_batch(noisy)
            seconds[name].append(time.perf_counter() - tic)
    return seconds, {name: (out - outputs["torch"]).abs().max().item() for name, out in outputs.items()}


def run_by_run(slow: list[float], fast: list[float]) -> str:
    """The lowest and highest of the runs' speed-ups, each run's two timings taken back to back: how far this
    machine's drift moves the ratio within one command."""
    ratios = [s / f for s, f in zip(slow, fast)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}×"


def graph_origins(denoiser: Denoiser) -> str:
    """Where the ONNX Runtime graphs came from: one file, or each of a folder's networks'."""
    if isinstance(denoiser, ByImpulses):
        return f"{graph_origins(denoiser.exact)}; for moved impulses {graph_origins(denoiser.moved)}"
    if isinstance(denoiser, ByChannels):
        return f"{denoiser.gray.core.origin} (grayscale), {denoiser.colour.core.origin} (colour)"
    return denoiser.core.origin


LABELS_OF = {"onnx": "ONNX Runtime", "onnx-int8": "ONNX Runtime int8"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="timed runs per backend and case (median reported)")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--cases", nargs="+", choices=list(LABELS), default=list(LABELS))
    p.add_argument("--amount", type=float, default=0.5, help="salt-and-pepper amount of the inputs")
    other = p.add_mutually_exclusive_group()
    other.add_argument("--compare", type=Path, metavar="DIR", help="also time this checkpoint (ONNX Runtime)")
    other.add_argument("--compare-rev", metavar="REV", help="also time checkpoints/default at this git revision")
    p.add_argument("--backends", nargs="+", choices=("onnx", "onnx-int8"), default=["onnx", "onnx-int8"],
                   help="ONNX Runtime backends timed against torch (onnx-int8: the checkpoint's int8 graph)")
    p.add_argument("--no-colour-fill", action="store_true",
                   help="run the default model without its colour fill (torch code after either backend), so the "
                        "ratio is that of the network and the runner alone")
    args = p.parse_args(argv)
    args.backends = list(dict.fromkeys(args.backends))
    if args.runs < 1:
        p.error("--runs must be at least 1")
    options = {"colour_fill": False} if args.no_colour_fill else {}
    # The compared checkpoint's files must outlive its sessions (ONNX Runtime reopens the graph from its path).
    with tempfile.TemporaryDirectory() as tmp:
        compare = checkpoint_from_git(args.compare_rev, Path(tmp) / "compare") if args.compare_rev else args.compare
        denoisers = {b: load_denoiser(args.checkpoint, device="cpu", backend=b, **options)
                     for b in ("torch", *args.backends)}
        if compare is not None:
            denoisers["compare"] = load_denoiser(compare, device="cpu", backend=args.backends[0], **options)
        origins = "; ".join(f"{b}: {graph_origins(denoisers[b])}" for b in args.backends)
        compared = "" if compare is None else f"; compared with {args.compare_rev or compare} on {args.backends[0]}"
        print(f"checkpoint {args.checkpoint}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"ONNX Runtime graphs from {origins}; median of {args.runs} runs after a warm-up"
              f"{'; no colour fill' if args.no_colour_fill else ''}{compared}\n")
        head = ["case", "torch (s)"]
        for b in args.backends:
            head += [f"{LABELS_OF[b]} (s)", "speed-up", "run by run", "max difference"]
        if compare is not None:
            head += ["compared (s)", f"speed-up of {args.backends[0]} over it"]
        print("| " + " | ".join(head) + " |")
        print("| --- |" + " ---: |" * (len(head) - 1))
        for key in args.cases:
            noisy = salt_and_pepper(cases()[key](), amount=args.amount, generator=torch.Generator().manual_seed(0))
            runs, diffs = time_all(denoisers, noisy, runs=args.runs)
            seconds = {name: statistics.median(s) for name, s in runs.items()}
            cells = [LABELS[key], f"{seconds['torch']:.3f}"]
            for b in args.backends:
                cells += [f"{seconds[b]:.3f}", f"{seconds['torch'] / seconds[b]:.2f}×",
                          run_by_run(runs["torch"], runs[b]), f"{diffs[b]:.1e}"]
            if compare is not None:
                cells += [f"{seconds['compare']:.3f}", f"{seconds['compare'] / seconds[args.backends[0]]:.2f}×"]
            print("| " + " | ".join(cells) + " |", flush=True)

if __name__ == "__main__":
    main()
