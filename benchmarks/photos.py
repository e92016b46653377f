"""Benchmark: the default model on real photos of several sizes, against the adaptive median filter.

The photos are scikit-image's bundled samples (`pip install scikit-image`): astronaut 512x512 and
coffee 400x600 (colour), camera 512x512 (grayscale), and the astronaut enlarged to 2048x2048 (4
megapixels, which the default model runs in tiles). For each, salt-and-pepper noise at several amounts
(fixed seeds), PSNR/SSIM of both methods, and the time of one `.denoise(image)` call as users make it
(numpy uint8 in and out), the median over repeated runs. A picture of crops goes to --out.

    python -m benchmarks.photos --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from denoiser import load_denoiser
from denoiser.filters import AdaptiveMedianDenoiser
from denoiser.imaging import array_to_tensor
from denoiser.metrics import psnr, ssim
from denoiser.noise import salt_and_pepper_array

AMOUNTS = (0.1, 0.3, 0.5, 0.7)


def photos() -> dict[str, np.ndarray]:
    from skimage import data

    astronaut = data.astronaut()
    big = np.asarray(Image.fromarray(astronaut).resize((2048, 2048), Image.Resampling.LANCZOS))
    return {"astronaut 512x512 RGB": astronaut, "coffee 400x600 RGB": data.coffee(),
            "camera 512x512 gray": data.camera(), "astronaut 2048x2048 RGB": big}


def scores(out: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    a, b = array_to_tensor(out).unsqueeze(0), array_to_tensor(clean).unsqueeze(0)  # (C, H, W) -> (1, C, H, W)
    return psnr(a, b).item(), ssim(a, b).item()


def median_seconds(fn, image: np.ndarray, runs: int) -> float:
    fn(image)  # warm-up
    times = []
    for _ in range(runs):
        tic = time.perf_counter()
        fn(image)
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="timed runs per photo (median reported)")
    p.add_argument("--out", type=Path, default=Path("benchmark-results"))
    args = p.parse_args()
    model, adaptive = load_denoiser(device="cpu"), AdaptiveMedianDenoiser()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"threads: {torch.get_num_threads()}")
    print("| photo | amount | noisy | adaptive median | default model |")
    print("| --- | --- | --- | --- | --- |")
    crops = []
    for name, clean in photos().items():
        for i, amount in enumerate(AMOUNTS):
            noisy = salt_and_pepper_array(clean, amount=amount, seed=i)
            cells = [scores(noisy, clean), scores(adaptive.denoise(noisy), clean)]
            denoised = model.denoise(noisy)
            cells.append(scores(denoised, clean))
            print(f"| {name} | {amount} | " + " | ".join(f"{p:.2f} / {s:.3f}" for p, s in cells) + " |")
            if amount == 0.5 and clean.shape[0] == 512:
                crops.append(np.concatenate([x[128:384, 128:384] for x in (noisy, denoised, clean)], axis=1))
    print()
    print("| photo | default model (s) | adaptive median (s) |")
    print("| --- | --- | --- |")
    for name, clean in photos().items():
        noisy = salt_and_pepper_array(clean, amount=0.3, seed=0)
        t_model = median_seconds(model.denoise, noisy, args.runs)
        t_adaptive = median_seconds(adaptive.denoise, noisy, args.runs)
        print(f"| {name} | {t_model:.3f} | {t_adaptive:.3f} |")
    for i, crop in enumerate(crops):
        Image.fromarray(crop).save(args.out / f"photo_crop_{i}.png")
    print(f"crops (noisy | default model | clean, amount 0.5) written to {args.out}/photo_crop_*.png")


if __name__ == "__main__":
    main()
