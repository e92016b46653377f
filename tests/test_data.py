"""The loaders on real files in the real formats: a CIFAR-10 python-pickle folder, an ImageFolder, a zip."""

import hashlib
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10

import denoiser.data
from denoiser.data import (Preprocess, article_normalize, load_split, one_per_class, prepare_batch,
                           sample_across_classes, to_gray)

from conftest import CLASSES


def write_cifar_pickles(root: Path, *, per_batch: int = 6) -> tuple[Path, list, list]:
    """torchvision's layout: cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta (pickled dicts)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)  # CIFAR-10 ships Python 2 pickles
    labels = [f"class{i}" for i in range(10)]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": labels}, f, protocol=2)
    md5 = lambda n: hashlib.md5((folder / n).read_bytes()).hexdigest()
    return root, [[n, md5(n)] for n in names[:5]], [[names[5], md5(names[5])]]


def test_torchvision_cifar_folder(tmp_path, monkeypatch) -> None:
    root, train_list, test_list = write_cifar_pickles(tmp_path)
    # torchvision checks each file's md5 against the real CIFAR-10's; point it at our tiny files' sums.
    monkeypatch.setattr(CIFAR10, "train_list", train_list)
    monkeypatch.setattr(CIFAR10, "test_list", test_list)
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                          "md5": hashlib.md5((root / "cifar-10-batches-py" / "batches.meta").read_bytes()).hexdigest()})
    train, test = load_split(root, split="train"), load_split(root, split="test")
    assert train.images.shape == (30, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (6, 3, 32, 32) and len(test.classes) == 10
    with open(root / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    expected = torch.from_numpy(raw["data"].reshape(-1, 3, 32, 32))  # CIFAR rows are (3*32*32) planar RGB
    assert torch.equal(test.images, expected)
    assert test.labels.tolist() == raw["labels"]
    sample = load_split(root, split="train", limit=10, seed=3)
    keep = sample_across_classes(train.labels.tolist(), limit=10, seed=3)
    assert torch.equal(sample.images, train.images[keep]) and torch.equal(sample.labels, train.labels[keep])


def test_image_folder_with_png_and_jpeg(image_folder: Path) -> None:
    assert {p.suffix for p in (image_folder / "train" / "cat").iterdir()} == {".png", ".jpg"}
    train = load_split(image_folder, split="train")
    assert train.images.shape == (48, 3, 32, 32) and train.classes == sorted(CLASSES)
    assert torch.bincount(train.labels).tolist() == [16, 16, 16]
    assert len(load_split(image_folder, split="test", limit=5)) == 5


def test_zip_matches_the_extracted_folder(image_folder: Path, tmp_path: Path) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(image_folder.rglob("*.*")):
            zf.write(f, f.relative_to(image_folder))
    from_zip, from_folder = load_split(archive, split="test"), load_split(image_folder, split="test")
    assert torch.equal(from_zip.images, from_folder.images)
    assert torch.equal(from_zip.labels, from_folder.labels)


def test_sample_across_classes_is_even_seeded_and_in_file_order() -> None:
    labels = [0] * 10 + [1] * 2 + [2] * 6
    keep = sample_across_classes(labels, limit=7, seed=0)
    assert keep == sorted(keep) and len(set(keep)) == 7
    assert sorted(labels[i] for i in keep) == [0, 0, 0, 1, 1, 2, 2]  # class 1 gives all it has, the rest share
    assert sample_across_classes(labels, limit=7, seed=0) == keep
    assert sample_across_classes(labels, limit=7, seed=1) != keep
    assert sample_across_classes(labels, limit=None, seed=0) == list(range(18))
    assert sample_across_classes(labels, limit=50, seed=0) == list(range(18))
    with pytest.raises(ValueError, match="limit must be a positive"):
        sample_across_classes(labels, limit=0, seed=0)


def test_limits_sample_every_class_and_decode_only_the_sample(image_folder: Path, tmp_path: Path,
                                                              monkeypatch) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # class-sorted, like the offline CIFAR-10 copy
        for f in sorted(image_folder.rglob("*.*")):
            zf.write(f, f.relative_to(image_folder))
    decoded = []
    decode = denoiser.data._decode_rgb
    monkeypatch.setattr(denoiser.data, "_decode_rgb", lambda data, *, name: decoded.append(name) or decode(data, name=name))
    from_zip = load_split(archive, split="train", limit=6, seed=0)
    assert len(decoded) == 6
    assert torch.bincount(from_zip.labels).tolist() == [2, 2, 2]
    from_folder = load_split(image_folder, split="train", limit=6, seed=0)
    assert torch.equal(from_zip.images, from_folder.images) and torch.equal(from_zip.labels, from_folder.labels)
    other = load_split(archive, split="train", limit=6, seed=1)
    assert not torch.equal(other.images, from_zip.images)
    # Classes are dealt in turn, so 5 of 3 classes is 2, 2, 1.
    assert torch.bincount(load_split(image_folder, split="test", limit=5).labels).tolist() == [2, 2, 1]
    with pytest.raises(ValueError, match="limit must be a positive"):
        load_split(image_folder, split="test", limit=-1)


def test_bad_sources_give_clear_errors(tmp_path: Path, image_folder: Path) -> None:
    with pytest.raises(ValueError, match="expected a .zip or folder"):
        load_split(tmp_path, split="train")
    with pytest.raises(ValueError, match="split must be"):
        load_split(image_folder, split="valid")
    broken = tmp_path / "broken"
    (broken / "test" / "cat").mkdir(parents=True)
    (broken / "test" / "cat" / "0000.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot decode image"):
        load_split(broken, split="test")


def test_one_per_class_follows_the_article() -> None:
    labels = torch.tensor([3, 0, 2, 1, 0, 2, 3, 1])
    # class 0 at 1, then class 1 after it at 3, class 2 at 5, class 3 at 6
    assert one_per_class(labels, num_classes=4).tolist() == [1, 3, 5, 6]


def test_gray_and_article_normalization() -> None:
    images = torch.tensor([[[[0, 255]], [[30, 255]], [[60, 255]]]], dtype=torch.uint8)  # (1, 3, 1, 2)
    gray = to_gray(images)
    assert gray.shape == (1, 1, 1, 2) and gray[0, 0, 0, 0].item() == pytest.approx(30 / 255)
    x = torch.tensor([0.2, 0.4, 0.6, 0.333]).view(1, 1, 2, 2)
    assert article_normalize(x).flatten().tolist() == pytest.approx([0.0, 0.5, 1.0, 0.33])
    assert torch.equal(article_normalize(torch.full((1, 1, 2, 2), 0.7)), torch.zeros(1, 1, 2, 2))


def test_prepare_batch_options() -> None:
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    assert prepare_batch(images, Preprocess(color=True)).shape == (8, 3, 16, 16)
    single = prepare_batch(images, Preprocess(random_channel_prob=1.0), generator=torch.Generator().manual_seed(0))
    channels = images.float() / 255
    assert all(any(torch.equal(single[i, 0], channels[i, c]) for c in range(3)) for i in range(8))
    normalized = prepare_batch(images, Preprocess(normalize_prob=1.0))
    assert torch.all(normalized.amin(dim=(1, 2, 3)) == 0) and torch.all(normalized.amax(dim=(1, 2, 3)) == 1)
