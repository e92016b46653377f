"""Benchmark: preparing CIFAR-10 the article's way (grayscale, min-max normalization, salt-and-pepper noise).

Our vectorized torch code prepares all 60,000 images; the article's per-pixel Python loops (ported
straight from the Paperspace article, progress bars removed) run on a subset and are extrapolated to
60,000. Both run in this one process, one after the other, so they share the machine's state.

    python -m benchmarks.prepare_speed --data ../shared/data/cifar10-images.zip --subset 1000
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch

from denoiser.data import article_normalize, load_split, to_gray
from denoiser.noise import article_noise


# ---- the article's preprocessing, as written there (a straight port, for timing only) ----
def article_min_max_normalize_gray(dataset: list) -> list:
    normalized = []
    for image in dataset:
        temp = []
        pixels = image.flatten()
        minimum, maximum = pixels.min(), pixels.max()
        for pixel in list(pixels):
            temp.append(round((pixel - minimum) / (maximum - minimum), 2))
        normalized.append(np.array(temp).reshape((32, 32)))
    return normalized


def article_random_noise(dataset: list, noise_intensity: float = 0.2) -> list:
    noised = []
    noise_threshold = 1 - noise_intensity
    for image in dataset:
        image = image.reshape(1024)
        noise_vector = np.zeros(1024)
        for idx in range(1024):
            regulator = round(random.random(), 1)
            if regulator > noise_threshold:
                noise_vector[idx] = 1
            elif regulator == noise_threshold:
                noise_vector[idx] = 0
            else:
                noise_vector[idx] = image[idx]
        noised.append(noise_vector.reshape((32, 32)))
    return noised


def time_ours(images: torch.Tensor) -> float:
    start = time.perf_counter()
    clean = article_normalize(to_gray(images))
    article_noise(clean, intensity=0.2, generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - start


def time_article(images: torch.Tensor) -> float:
    as_hwc = [x for x in images.permute(0, 2, 3, 1).numpy()]  # the article's list of (32, 32, 3) arrays
    start = time.perf_counter()
    gray = [x.mean(axis=2) for x in as_hwc]
    article_random_noise(article_min_max_normalize_gray(gray))
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="CIFAR-10 source (see denoiser.data.load_split)")
    p.add_argument("--subset", type=int, default=1000, help="images the article's loops run on")
    args = p.parse_args()

    images = torch.cat([load_split(args.data, split=s).images for s in ("train", "test")])
    n = len(images)
    ours = min(time_ours(images) for _ in range(3))
    article = time_article(images[: args.subset]) * n / args.subset
    print(f"threads: {torch.get_num_threads()}, images: {n:,}")
    print("| method | seconds for all images | how |")
    print("| --- | --- | --- |")
    print(f"| denoiser (vectorized torch) | {ours:.2f} | measured on all {n:,}, best of 3 |")
    print(f"| article's Python loops | {article:.0f} | measured on {args.subset:,}, extrapolated |")
    print(f"speed-up: {article / ours:,.0f}x")


if __name__ == "__main__":
    main()
