"""The photo collection of issue 9 and its held-out validation split.

`../shared/data/photos-train.zip` holds 232 BSD500 training photos (`bsd232/*.jpg`, 481x321 or 321x481)
and the 91 "T91" images of Yang et al.'s super-resolution set (`t91/*.png`, smaller). The same layout in a
folder works too. About 25 of them are held out for validation: the photo benchmark scores methods on
them, and training must never see them (`training_names` is what training reads).

The split is stratified, each top-level folder giving its proportional share (18 BSD + 7 T91 of 25), and
it is decided by a hash, not a random generator: each name's SHA-256 with the seed orders the names, and
the first ones are held out. So the split is the same on every machine and every library version, and
adding photos to the collection moves only the newcomers that sort ahead.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos-train.zip"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
VALIDATION_COUNT = 25
VALIDATION_SEED = 0


def photo_names(source: str | Path = PHOTOS_ZIP) -> list[str]:
    """The photos' names, "folder/file" relative to the zip's or folder's root, sorted."""
    source = Path(source)
    if not source.exists():
        raise ValueError(f"no photo collection at {source} (expected a .zip or folder with bsd232/ and t91/)")
    if source.is_dir():
        names = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
    else:
        try:
            with zipfile.ZipFile(source) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            raise ValueError(f"{source} is not a readable zip file") from None
    photos = sorted(n for n in names if n.lower().endswith(PHOTO_SUFFIXES) and "/" in n)
    if not photos:
        raise ValueError(f"{source} holds no photos in sub-folders ({', '.join(PHOTO_SUFFIXES)})")
    return photos


def _folder(name: str) -> str:
    return name.split("/", 1)[0]


def _order_key(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def _shares(sizes: dict[str, int], count: int) -> dict[str, int]:
    """`count` split over the folders in proportion to their sizes, by largest remainder."""
    total = sum(sizes.values())
    exact = {f: count * n / total for f, n in sizes.items()}
    shares = {f: int(x) for f, x in exact.items()}
    by_remainder = sorted(sizes, key=lambda f: (-(exact[f] - shares[f]), f))
    for f in by_remainder[: count - sum(shares.values())]:
        shares[f] += 1
    return shares


def validation_names(names: list[str], *, count: int = VALIDATION_COUNT, seed: int = VALIDATION_SEED) -> list[str]:
    """The held-out photos among `names`: `count` of them, stratified over the top-level folders, sorted."""
    if not 0 < count <= len(names):
        raise ValueError(f"count must be between 1 and the {len(names)} photos, got {count}")
    folders: dict[str, list[str]] = {}
    for name in names:
        folders.setdefault(_folder(name), []).append(name)
    shares = _shares({f: len(v) for f, v in folders.items()}, count)
    held = [n for f, members in folders.items() for n in sorted(members, key=lambda n: _order_key(n, seed))[: shares[f]]]
    return sorted(held)


def training_names(names: list[str], *, count: int = VALIDATION_COUNT, seed: int = VALIDATION_SEED) -> list[str]:
    """`names` without the held-out validation photos: the only photos training may use."""
    held = set(validation_names(names, count=count, seed=seed))
    return [n for n in names if n not in held]


def _decode(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = image.convert("L" if image.mode in ("1", "L", "I;16", "I", "F") else "RGB")
            return np.asarray(image).copy()
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"photo {name} cannot be decoded: {err}") from None


def load_photos(names: list[str], source: str | Path = PHOTOS_ZIP) -> dict[str, np.ndarray]:
    """The named photos at their native size, uint8 (H, W, 3), or (H, W) for grayscale files."""
    source = Path(source)
    if source.is_dir():
        return {n: _decode((source / n).read_bytes(), n) for n in names}
    try:
        with zipfile.ZipFile(source) as archive:
            return {n: _decode(archive.read(n), n) for n in names}
    except (zipfile.BadZipFile, FileNotFoundError):
        raise ValueError(f"{source} is not a readable zip file") from None
    except KeyError as err:
        raise ValueError(f"{source} has no photo {err}") from None
