"""Build the demo's shipped gallery: a small, fixed sample of the CIFAR-10 test split.

The app (app.py) shows these images labelled with their class so a visitor can try the denoiser
without an image of their own. The source is the offline CIFAR-10 copy laid out as
test/<class>/NNNN.jpg inside a zip; each pick is re-encoded losslessly as PNG so the gallery adds no
further JPEG loss. The choice is seeded, so re-running the script rewrites the same files.

    python scripts/make_gallery.py                       # defaults: ../shared/data/cifar10-images.zip
    python scripts/make_gallery.py --per-class 10 --out assets/gallery
"""

from __future__ import annotations

import argparse
import io
import random
import zipfile
from collections import defaultdict
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ZIP = REPO.parent / "shared" / "data" / "cifar10-images.zip"
DEFAULT_OUT = REPO / "assets" / "gallery"


def test_members(archive: zipfile.ZipFile) -> dict[str, list[str]]:
    """Map class name -> sorted member names of its test images."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for name in archive.namelist():
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "test" and parts[2].lower().endswith(".jpg"):
            by_class[parts[1]].append(name)
    if not by_class:
        raise ValueError("the archive holds no test/<class>/NNNN.jpg images")
    return {cls: sorted(names) for cls, names in sorted(by_class.items())}


def make_gallery(source: Path, out: Path, *, per_class: int = 10, seed: int = 0) -> list[Path]:
    """Write `per_class` PNGs per class as out/<class>_<NNNN>.png and return their paths."""
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # a re-run with other options must not leave stale picks behind
        old.unlink()
    rng = random.Random(seed)
    written = []
    with zipfile.ZipFile(source) as archive:
        for cls, names in test_members(archive).items():
            for name in sorted(rng.sample(names, min(per_class, len(names)))):
                with Image.open(io.BytesIO(archive.read(name))) as image:
                    rgb = image.convert("RGB")
                path = out / f"{cls}_{Path(name).stem}.png"
                rgb.save(path, format="PNG", optimize=True)
                written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_ZIP, help="CIFAR-10 images zip")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="gallery folder to (re)write")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = make_gallery(args.source, args.out, per_class=args.per_class, seed=args.seed)
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} images, {total / 1024:.0f} KiB, to {args.out}")


if __name__ == "__main__":
    main()
