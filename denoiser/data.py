"""Image sets for training and evaluation, decoded once into memory as uint8 tensors.

Sources (`load_split`):
* torchvision's CIFAR-10 (`torchvision.datasets.CIFAR10`): pass a folder holding `cifar-10-batches-py`,
  or the word `cifar10` to download it into `~/.cache/denoiser` when the internet is reachable;
* a folder in ImageFolder layout, `<root>/<split>/<class>/<image>`, PNG, JPEG or anything Pillow reads;
* the same layout inside a `.zip` file, read without extracting it (e.g. the offline CIFAR-10 copy).

`limit=N` keeps a seeded sample of N images spread evenly over the classes (`sample_across_classes`),
chosen from the file list before anything is decoded, so a quick run on 2,000 images reads 2,000 files
and still sees every class (archives list their files class by class).

All images of a split must share one size; they come back as (N, 3, H, W) uint8. Batches are moved to the
training device as uint8 and turned into [0, 1] floats there (`prepare_batch`), which is where grayscale
conversion, the article's min-max normalization and augmentation happen, vectorized over the batch.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SPLITS = ("train", "test")


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor | slice) -> "ImageSet":
        return ImageSet(self.images[indices], self.labels[indices], self.classes)


def _decode_rgb(data: bytes | Path, *, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:  # Pillow raises many types for broken files; report which file
        raise ValueError(f"cannot decode image {name}: {exc}") from exc


def _stack(arrays: list[np.ndarray], labels: list[int], classes: list[str], *, source: str) -> ImageSet:
    if not arrays:
        raise ValueError(f"no images found in {source}")
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"images in {source} have different sizes {sorted(sizes)[:3]}; resize them to one size")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) -> (N, 3, H, W)
    return ImageSet(images, torch.tensor(labels, dtype=torch.int64), classes)


def sample_across_classes(labels: list[int], *, limit: int | None, seed: int) -> list[int]:
    """Indices of a seeded sample of `limit` items, as even over the classes as their sizes allow, in
    their original order. Each class is shuffled, then classes are dealt out in turn: with N items per
    class wanted, every class gives N (or all it has). `limit=None` keeps everything."""
    if limit is None or limit >= len(labels):
        return list(range(len(labels)))
    if limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}")
    gen = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    shuffled = [[members[j] for j in torch.randperm(len(members), generator=gen).tolist()]
                for _, members in sorted(by_class.items())]
    dealt = [members[k] for k in range(max(map(len, shuffled))) for members in shuffled if k < len(members)]
    return sorted(dealt[:limit])


def _load_zip(path: Path, split: str, limit: int | None, seed: int) -> ImageSet:
    pattern = re.compile(rf"(?:^|/){split}/([^/]+)/[^/]+$")
    with zipfile.ZipFile(path) as zf:
        members = sorted((m.group(1), name) for name in zf.namelist()
                         if (m := pattern.search(name)) and name.lower().endswith(IMAGE_SUFFIXES))
        classes = sorted({cls for cls, _ in members})
        labels = [classes.index(cls) for cls, _ in members]
        keep = sample_across_classes(labels, limit=limit, seed=seed)
        arrays = [_decode_rgb(zf.read(members[i][1]), name=members[i][1])
                  for i in tqdm(keep, desc=f"decode {path.name}:{split}", unit="img", leave=False)]
    return _stack(arrays, [labels[i] for i in keep], classes, source=f"{path}:{split}")


def _load_folder(root: Path, split: str, limit: int | None, seed: int) -> ImageSet:
    split_dir = root / split
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    files = [(i, f) for i, cls in enumerate(classes) for f in sorted((split_dir / cls).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    files = [files[i] for i in sample_across_classes([label for label, _ in files], limit=limit, seed=seed)]
    arrays = [_decode_rgb(f, name=str(f)) for _, f in tqdm(files, desc=f"decode {split_dir}", unit="img", leave=False)]
    return _stack(arrays, [i for i, _ in files], classes, source=str(split_dir))


def _load_torchvision(root: Path, split: str, *, download: bool, limit: int | None, seed: int) -> ImageSet:
    from torchvision.datasets import CIFAR10

    ds = CIFAR10(str(root), train=split == "train", download=download)
    keep = sample_across_classes(list(ds.targets), limit=limit, seed=seed)
    images = torch.from_numpy(ds.data[keep]).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
    return ImageSet(images, torch.tensor([ds.targets[i] for i in keep], dtype=torch.int64), list(ds.classes))


def load_split(source: str | Path, *, split: str, limit: int | None = None, seed: int = 0) -> ImageSet:
    """Decode one split ("train" or "test") of `source` into memory; `limit` keeps a seeded sample of that
    many images across the classes (`sample_across_classes`), drawn before decoding."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if str(source) == "cifar10":
        return _load_torchvision(Path.home() / ".cache" / "denoiser", split, download=True, limit=limit, seed=seed)
    path = Path(source)
    if path.is_file() and zipfile.is_zipfile(path):
        return _load_zip(path, split, limit, seed)
    if (path / "cifar-10-batches-py").is_dir():
        return _load_torchvision(path, split, download=False, limit=limit, seed=seed)
    if (path / split).is_dir():
        return _load_folder(path, split, limit, seed)
    raise ValueError(f"{source}: expected a .zip or folder with {split}/<class>/<image> files, a folder holding "
                     "cifar-10-batches-py, or 'cifar10' to download CIFAR-10")


def one_per_class(labels: torch.Tensor, *, num_classes: int) -> torch.Tensor:
    """Indices of one image per class, found as the article does: the first image of class 0, then the
    first image of class 1 after it, and so on (classes not found that way fall back to their first image)."""
    chosen, want = [], 0
    for i, label in enumerate(labels.tolist()):
        if want < num_classes and label == want:
            chosen.append(i)
            want += 1
    for cls in range(want, num_classes):
        hits = torch.nonzero(labels == cls).flatten()
        if len(hits):
            chosen.append(int(hits[0]))
    return torch.tensor(chosen, dtype=torch.int64)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, C, H, W) in [0, 1]."""
    return images.float() / 255.0


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float (N, 1, H, W): the article's channel mean, scaled to [0, 1]."""
    # Summing in float32 directly avoids a full float copy of all three channels.
    return images.sum(dim=1, keepdim=True, dtype=torch.float32) / (3 * 255.0)


def article_normalize(images: torch.Tensor) -> torch.Tensor:
    """The article's per-image min-max normalization to [0, 1], rounded to 2 decimals as it does.
    A constant image (where the article divides by zero) becomes all zeros."""
    lo, hi = torch.aminmax(images.flatten(1), dim=1)  # (N, C, H, W) -> (N, C*H*W) -> two (N,)
    lo, hi = lo.view(-1, 1, 1, 1), hi.view(-1, 1, 1, 1)  # (N,) -> (N, 1, 1, 1)
    scale = torch.where(hi > lo, 100.0 / (hi - lo).clamp_min(1e-12), torch.zeros_like(hi))
    return torch.round((images - lo) * scale) / 100


@dataclass
class Preprocess:
    """How a uint8 batch becomes clean [0, 1] training targets."""

    color: bool = False  # False: the article's grayscale (channel mean); True: RGB
    normalize_prob: float = 0.0  # share of images given the article's min-max normalization (1.0 = always)
    random_channel_prob: float = 0.0  # grayscale only: share of images that use one random RGB channel
    # instead of the mean; colour images are denoised channel by channel, so this matches inference
    flip: bool = False  # random horizontal flips
    gray_prob: float = 0.0  # colour only: share of images turned gray (the channel mean in all three channels),
    # so a colour network also learns the grayscale images it is given as three equal channels


def prepare_batch(images: torch.Tensor, recipe: Preprocess, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 (B, 3, H, W) on any device -> clean float targets (B, C, H, W) in [0, 1]."""
    def draw(n: int) -> torch.Tensor:
        device = generator.device if generator is not None else images.device
        return torch.rand(n, generator=generator, device=device).to(images.device)

    b = images.shape[0]
    x = to_float(images) if recipe.color else to_gray(images)
    if not recipe.color and recipe.random_channel_prob > 0:
        channel = (draw(b) * 3).long().clamp_max(2)
        single = to_float(images)[torch.arange(b, device=images.device), channel].unsqueeze(1)  # (B, H, W) -> (B, 1, H, W)
        x = torch.where((draw(b) < recipe.random_channel_prob).view(-1, 1, 1, 1), single, x)
    if recipe.color and recipe.gray_prob > 0:
        x = torch.where((draw(b) < recipe.gray_prob).view(-1, 1, 1, 1), x.mean(dim=1, keepdim=True).expand_as(x), x)
    if recipe.flip:
        x = torch.where((draw(b) < 0.5).view(-1, 1, 1, 1), x.flip(-1), x)
    if recipe.normalize_prob > 0:
        x = torch.where((draw(b) < recipe.normalize_prob).view(-1, 1, 1, 1), article_normalize(x), x)
    return x
