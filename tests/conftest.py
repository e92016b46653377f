"""Shared fixtures: small real datasets written to disk in the formats the loaders read."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # train.py and app.py live at the repository root

CLASSES = ("cat", "dog", "ship")


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ONNX exports of the tests' throwaway checkpoints go to a temporary cache, not the user's ~/.cache
    (subprocesses inherit it through the environment)."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield Path(os.environ["XDG_CACHE_HOME"])
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before
GALLERY = ROOT / "assets" / "gallery"


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of one shape."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="session")
def gallery_u8() -> torch.Tensor:
    """The demo's 100 real CIFAR-10 test images (10 per class), uint8 (100, 3, 32, 32)."""
    files = sorted(GALLERY.glob("*.png"))
    assert len(files) == 100
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) -> (N, 3, H, W)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photo: scikit-image's astronaut, a 160x128 crop of her face and the flag, uint8 (128, 160, 3)."""
    from skimage import data

    image = np.ascontiguousarray(data.astronaut()[40:168, 180:340])
    image.setflags(write=False)  # shared by every test of the session: none may change it
    return image


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
