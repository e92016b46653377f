"""Shared fixtures: small real datasets written to disk in the formats the loaders read."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # train.py and app.py live at the repository root

CLASSES = ("cat", "dog", "ship")


def smooth_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A photo-like image: random smooth gradients and a blob, uint8 (size, size, 3)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    channels = []
    for _ in range(3):
        a, b, c = rng.uniform(-1, 1, 3)
        cx, cy = rng.uniform(0.2, 0.8, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) * 20)
        channels.append(0.5 + 0.25 * (a * xx + b * yy) + 0.3 * c * blob)
    return (np.clip(np.stack(channels, -1), 0, 1) * 255).astype(np.uint8)


def write_image_folder(root: Path, *, per_class: dict[str, int], seed: int = 0) -> Path:
    """root/<split>/<class>/NNNN.(png|jpg), alternating PNG and JPEG files."""
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for cls in CLASSES:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                ext = "png" if i % 2 == 0 else "jpg"
                Image.fromarray(smooth_image(rng)).save(folder / f"{i:04d}.{ext}")
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ImageFolder dataset: 3 classes, 16 training and 4 test images each."""
    return write_image_folder(tmp_path_factory.mktemp("folder"), per_class={"train": 16, "test": 4})
