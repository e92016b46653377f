"""Benchmark: training throughput of our loop against a straight port of the article's loop.

Both train the same model (the article's autoencoder) on the same images with the same batch size,
in this one process, one after the other:

* the article's loop: a list of (noisy, clean) float64 numpy pairs, a `Dataset` applying `ToTensor` and
  `Normalize(0.5, 0.5)` per item, an unshuffled `DataLoader`, `.float()` on every batch and `loss.item()`
  logged every step, as the Paperspace article writes it;
* ours: `denoiser.training.train` itself (uint8 batches, noise drawn in the loop, no per-item Python),
  timed over its training steps only, as its log line reports.

    python -m benchmarks.train_throughput --data ../shared/data/cifar10-images.zip --images 6400
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from denoiser.data import Preprocess, article_normalize, load_split, to_gray
from denoiser.models import ArticleAutoencoder
from denoiser.noise import NoiseRecipe, article_noise
from denoiser.training import TrainConfig, train


class ArticlePairs(Dataset):
    """The article's CustomCIFAR10: per-item transforms on numpy pairs."""

    def __init__(self, pairs: list, transform) -> None:
        self.pairs, self.transform = pairs, transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int):
        noisy, clean = self.pairs[idx]
        return self.transform(noisy), self.transform(clean)


def article_loop_images_per_s(images: torch.Tensor, *, batch_size: int) -> float:
    clean = article_normalize(to_gray(images))
    noisy = article_noise(clean, generator=torch.Generator().manual_seed(0))
    pairs = list(zip(noisy[:, 0].double().numpy(), clean[:, 0].double().numpy()))  # the article's float64 lists
    loader = DataLoader(ArticlePairs(pairs, transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.5, 0.5)])),
                        batch_size)
    model = ArticleAutoencoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses, start = [], time.perf_counter()
    for noisy_b, clean_b in loader:
        optimizer.zero_grad()
        # The article's network sees [-1, 1]; ours maps [0, 1] inside forward, so undo Normalize first.
        output = model(noisy_b.float() * 0.5 + 0.5)
        loss = F.mse_loss(output, clean_b.float() * 0.5 + 0.5)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return len(pairs) / (time.perf_counter() - start)


def our_loop_images_per_s(data: str, *, n: int, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(architecture="article", data=data, out=out, epochs=1, batch_size=batch_size, lr=1e-3,
                          shuffle="once", noise=NoiseRecipe(rule="article"), val_noise=NoiseRecipe(rule="article"),
                          preprocess=Preprocess(normalize_prob=1.0), val_preprocess=Preprocess(normalize_prob=1.0),
                          train_limit=n, val_limit=100, device="cpu")
        return train(cfg)["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--images", type=int, default=6400, help="training images per loop")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    images = load_split(args.data, split="train", limit=args.images).images
    torch.manual_seed(0)
    article = article_loop_images_per_s(images, batch_size=args.batch_size)
    ours = our_loop_images_per_s(args.data, n=args.images, batch_size=args.batch_size)
    print(f"threads: {torch.get_num_threads()}, images per loop: {args.images:,}, batch {args.batch_size}")
    print("| loop | images/s |")
    print("| --- | --- |")
    print(f"| article's loop (straight port) | {article:.0f} |")
    print(f"| denoiser.training | {ours:.0f} |")
    print(f"ratio: {ours / article:.2f}x")


if __name__ == "__main__":
    main()
