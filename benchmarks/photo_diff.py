"""Two runs of the photo benchmark (`benchmarks/photos.py`) compared cell by cell (issue 13).

A cell is one method on one image set under one scenario; its figures are the mean PSNR and SSIM over the
set's images, as the report's tables give them, but unrounded. The runs must hold the same images and
scenarios (same `--seed`, `--sets`, `--quick`), such as one run with `--backend onnx` and one with
`--backend onnx-int8`: every cell that moved is listed, most lowered first, then the range.

    python -m benchmarks.photos --backend onnx --no-crops --out A
    python -m benchmarks.photos --backend onnx-int8 --no-crops --out B
    python -m benchmarks.photo_diff A/photos.json B/photos.json [--method "Default model"] [--tolerance 0.05]

It exits with status 1 when a cell's PSNR moved by more than `--tolerance` dB, or when a cell is in one run
only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from denoiser.photo_benchmark import Summary, records_from_json

Cell = tuple[str, str, str]  # (image set, scenario key, method)


def load_cells(path: Path) -> dict[Cell, tuple[float, float]]:
    """Mean (PSNR, SSIM) of each cell of a photos.json, as its report's tables give them (`Summary.quality`)."""
    try:
        return Summary(records_from_json(json.loads(path.read_text())["records"])).quality
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a photos.json of benchmarks/photos.py: {error!r}") from error


def compare(before: dict[Cell, tuple[float, float]],
            after: dict[Cell, tuple[float, float]]) -> tuple[list[tuple[Cell, float, float]], list[Cell]]:
    """The cells whose PSNR or SSIM moved, as (cell, PSNR change, SSIM change), most lowered first; and the cells
    only one run holds."""
    unmatched = sorted(before.keys() ^ after.keys())
    moved = [(c, after[c][0] - before[c][0], after[c][1] - before[c][1])
             for c in before.keys() & after.keys() if after[c] != before[c]]
    return sorted(moved, key=lambda m: (m[1], m[0])), unmatched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.photo_diff", description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path, help="the first run's photos.json")
    parser.add_argument("after", type=Path, help="the second run's photos.json")
    parser.add_argument("--method", default=None, help='compare this method\'s cells only, e.g. "Default model"')
    parser.add_argument("--tolerance", type=float, default=0.05, help="largest PSNR change allowed, dB (default 0.05)")
    args = parser.parse_args(argv)
    try:
        before, after = load_cells(args.before), load_cells(args.after)
    except ValueError as error:
        parser.error(str(error))
    if args.method:
        before, after = ({c: v for c, v in run.items() if c[2] == args.method} for run in (before, after))
    moved, unmatched = compare(before, after)
    print(f"{len(before.keys() & after.keys())} cells in both runs, {len(moved)} moved")
    for cell, psnr, ssim in moved:
        print(f"{psnr:+.4f} dB  SSIM {ssim:+.5f}  {' | '.join(cell)}"
              f"  ({before[cell][0]:.2f} -> {after[cell][0]:.2f} dB)")
    for cell in unmatched:
        print(f"only in {'the first' if cell in before else 'the second'} run: {' | '.join(cell)}")
    if moved:
        print(f"PSNR {moved[0][1]:+.4f} to {moved[-1][1]:+.4f} dB, SSIM at most {max(abs(m[2]) for m in moved):.5f}")
    beyond = [m for m in moved if abs(m[1]) > args.tolerance]
    if beyond or unmatched:
        print(f"{len(beyond)} cells beyond ±{args.tolerance} dB, {len(unmatched)} in one run only")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
