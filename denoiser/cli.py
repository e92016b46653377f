"""The `denoise` command (also `python -m denoiser`): denoise image files, folders and globs from the shell.

A thin layer over the package: `denoiser.methods.METHODS` makes the denoiser, `denoiser.noise` makes demo
inputs (`--add-noise`), and this module only finds the files, reads and writes them, and reports. Files are
read as the demo reads uploads: grayscale stays grayscale, colour stays colour, transparency is kept (only
the colours are denoised), EXIF rotation is applied, and 16-bit grayscale is read at full precision (and
written back as 16-bit PNG). Results are lossless PNG unless `--format keep` asks for the input's format.

Safety rules: an input is never overwritten unless `--in-place` says so, an existing output only with
`--overwrite`, and every file is written to a temporary name and renamed, so an interrupted run leaves
either the old file or the new one. A file that cannot be read or written is reported and skipped.
Exit status: 0 when every file was written, 1 when some failed, 2 for a usage error (bad option, a
checkpoint that cannot be loaded).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from denoiser.inference import BACKENDS
from denoiser.interface import Denoiser
from denoiser.methods import METHODS
from denoiser.noise import salt_and_pepper_array
from denoiser.runners import sends_to_moved
from denoiser.uploads import UploadError, decode_image, open_image

# What a folder argument picks up; a file named explicitly is tried whatever its extension.
FOLDER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
DENOISED_SUFFIX, NOISY_SUFFIX = "-denoised", "-noisy"
EXIT_OK, EXIT_FAILED = 0, 1  # and 2, argparse's own, for usage errors
# Savers' options where the default would lose more than it must: near-lossless JPEG, lossless WebP.
SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}
SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")  # where Pillow writes 16-bit grayscale
# No limit of the command's own: Pillow's decompression-bomb check (about 179 megapixels) still applies.
MAX_PIXELS = 1 << 40


class FileError(Exception):
    """A problem with one file: reported, the file skipped, the run goes on."""


@dataclass
class Picture:
    pixels: np.ndarray  # float32 (H, W) grayscale or (H, W, 3) colour, in [0, 1]
    alpha: np.ndarray | None  # float32 (H, W) in [0, 1], or None when fully opaque
    sixteen_bit: bool  # grayscale read at more than 8 bits, written back at 16 bits


@dataclass
class Job:
    source: Path
    target: Path
    problem: str | None = None  # set when the job must not run (it would overwrite something)


# ---------------------------------------------------------------------------------------------------------
# Reading and writing images


def read_picture(path: Path) -> Picture:
    """Decode an image file as the demo decodes uploads (`denoiser.uploads`); every failure is a FileError."""
    try:
        image, _ = open_image(path, max_pixels=MAX_PIXELS)
        deep = image.mode in ("I", "F") or image.mode.startswith("I;16")
        loaded = decode_image(image, name=path.stem)
    except UploadError as err:
        raise FileError(str(err)) from None
    except OSError as err:  # unreadable: permissions, a folder behind a link, a vanished file
        raise FileError(f"cannot read the file ({err})") from None
    return Picture(pixels=loaded.pixels, alpha=loaded.alpha, sixteen_bit=deep)


def to_image(picture: Picture, *, fmt: str) -> Image.Image:
    """Float pixels (+ alpha) -> an 8-bit L, LA, RGB or RGBA image, or 16-bit grayscale where `fmt` stores it.

    JPEG stores no transparency: a JPEG output of a transparent image drops its alpha.
    """
    pixels = np.clip(picture.pixels, 0.0, 1.0)
    if picture.sixteen_bit and picture.alpha is None and pixels.ndim == 2 and fmt in SIXTEEN_BIT_FORMATS:
        return Image.fromarray((pixels * 65535.0 + 0.5).astype(np.uint16))  # mode I;16
    u8 = (pixels * 255.0 + 0.5).astype(np.uint8)
    if picture.alpha is None or fmt == "JPEG":
        return Image.fromarray(u8)
    a8 = (np.clip(picture.alpha, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    bands = [u8] if u8.ndim == 2 else [u8[..., i] for i in range(3)]
    return Image.merge("LA" if u8.ndim == 2 else "RGBA", [Image.fromarray(b) for b in bands + [a8]])


def image_format(path: Path) -> str:
    """The Pillow format that `path`'s extension names, for writing."""
    name = Image.registered_extensions().get(path.suffix.lower())
    if name is None or name not in Image.SAVE:
        raise FileError(f"cannot write {path.suffix or 'files without an extension'}: choose an image "
                        "extension such as .png")
    return name


def write_atomic(picture: Picture, target: Path) -> None:
    """Save through a temporary file beside `target`, then rename: never a half-written image at `target`."""
    fmt = image_format(target)
    image = to_image(picture, fmt=fmt)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:  # created with the user's umask, unlike mkstemp's private 0600
            image.save(f, format=fmt, **SAVE_OPTIONS.get(fmt, {}))
        os.replace(tmp, target)
    except (OSError, ValueError, KeyError) as err:  # Pillow refuses unsupported modes with any of these
        raise FileError(f"could not write {target}: {err}") from None
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------
# Which files, and where their results go


def expand_inputs(args: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named by the arguments (files, folders, globs), in order and once each; and the arguments
    that named nothing, with why."""
    found: dict[Path, Path] = {}
    missing: list[tuple[str, str]] = []
    for arg in args:
        path = Path(arg)
        if path.exists():
            matches = [path]
        elif glob.has_magic(arg):  # a quoted glob, or a shell that does not expand them
            matches = [Path(m) for m in sorted(glob.glob(arg, recursive=True))]
            if not matches:
                missing.append((arg, "no files match this pattern"))
        else:
            missing.append((arg, "no such file or folder"))
            continue
        for match in matches:
            files = _folder_images(match) if match.is_dir() else [match]
            if match.is_dir() and not files:
                missing.append((str(match), f"no images in this folder ({', '.join(FOLDER_EXTENSIONS)})"))
            for file in files:
                found.setdefault(file.resolve(), file)
    return list(found.values()), missing


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in FOLDER_EXTENSIONS)


def plan_jobs(sources: list[Path], *, out: Path | None, out_is_file: bool, suffix: str, keep_format: bool,
              in_place: bool, overwrite: bool) -> list[Job]:
    """One job per input: where its result goes, or why it must not be written."""
    jobs = []
    for source in sources:
        if in_place:
            target = source
        elif out_is_file:
            target = out
        else:
            name = source.stem + suffix + (source.suffix if keep_format else ".png")
            target = (out or source.parent) / name
        jobs.append(Job(source, target))
    inputs = {job.source.resolve() for job in jobs}
    claimed: dict[Path, Path] = {}
    for job in jobs:
        key = job.target.resolve()
        if key in claimed:
            job.problem = f"{claimed[key]} already writes {job.target}; use --format keep or rename one"
        elif key in inputs and not in_place:
            job.problem = f"{job.target} is an input; it is only overwritten with --in-place"
        elif job.target.exists() and not (overwrite or in_place):
            job.problem = f"{job.target} exists; pass --overwrite to replace it"
        claimed.setdefault(key, job.source)
    return jobs


# ---------------------------------------------------------------------------------------------------------
# The command


EXAMPLES = (
    ("photo.jpg", "writes photo-denoised.png beside it"),
    ("folder/ --out clean/", "writes clean/<name>.png for each image in folder/"),
    ("'scans/*.tif' --format keep", "writes scans/<name>-denoised.tif"),
    ("photo.jpg --add-noise 0.3 --seed 1", "writes photo-noisy.png, a noisy demo input"),
)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Remove salt-and-pepper noise from images: files, folders (their images, not recursive) "
                    "or glob patterns.",
        epilog="examples:\n" + "".join(f"  {prog} {example:36} {what}\n" for example, what in EXAMPLES) +
               "methods:\n" + "\n".join(textwrap.fill(m.blurb, 100, initial_indent=f"  {m.key:16} ",
                                                         subsequent_indent=" " * 19) for m in METHODS.values()) +
               "\n\nexit status: 0 all written, 1 some files failed (each is reported), 2 usage error")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("--method", choices=list(METHODS), default="default",
                        help="how to denoise (default: %(default)s)")
    parser.add_argument("--checkpoint", metavar="SOURCE",
                        help="checkpoint folder or Hugging Face Hub repo id for a learned method "
                             "(default: the shipped weights)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="how a learned method runs (default: %(default)s)")
    parser.add_argument("--out", type=Path, metavar="PATH",
                        help="a file (one input; its extension picks the format) or a folder (created when "
                             "missing); default: beside each input")
    parser.add_argument("--suffix", help=f"added to each output's name (default: {DENOISED_SUFFIX!r}, "
                                         f"{NOISY_SUFFIX!r} with --add-noise, none in an --out folder); "
                                         "write one that starts with a dash as --suffix=-clean")
    parser.add_argument("--format", choices=("png", "keep"), default=None,
                        help="png: lossless PNG (the default); keep: the input's own format")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    parser.add_argument("--in-place", action="store_true",
                        help="write each result over its input file, in its format (the original is lost)")
    parser.add_argument("--add-noise", type=float, metavar="AMOUNT",
                        help="instead of denoising, write a noisy copy: this share of pixels (0 to 1) "
                             "turned white or black; to make demo inputs")
    parser.add_argument("--seed", type=int, default=0, help="noise seed for --add-noise (default: %(default)s)")
    parser.add_argument("--per-channel", action="store_true",
                        help="with --add-noise: hit each colour value on its own (coloured dots), not whole pixels")
    return parser


def _check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.in_place and (args.out is not None or args.suffix is not None or args.format is not None):
        parser.error("--in-place writes over each input: it takes no --out, --suffix or --format")
    if args.add_noise is not None and not 0.0 <= args.add_noise <= 1.0:
        parser.error(f"--add-noise must be between 0 and 1, got {args.add_noise}")
    if args.seed < 0:
        parser.error(f"--seed must be 0 or more, got {args.seed}")
    if args.per_channel and args.add_noise is None:
        parser.error("--per-channel is an option of --add-noise")
    if args.checkpoint is not None and not METHODS[args.method].learned:
        parser.error(f"--checkpoint is for the learned methods "
                     f"({', '.join(k for k, m in METHODS.items() if m.learned)}), not {args.method!r}")


def _out_is_file(parser: argparse.ArgumentParser, out: Path | None, n_sources: int) -> bool:
    """An --out that exists as a folder, ends with a separator or has no image extension is a folder."""
    if out is None or out.is_dir() or str(out).endswith(("/", os.sep)):
        return False
    if out.suffix.lower() not in Image.registered_extensions():
        return False
    if n_sources != 1:
        parser.error(f"--out {out} is a file, but the inputs hold {n_sources} images: give a folder")
    return True


def _build_denoiser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Denoiser:
    try:
        return METHODS[args.method].build(source=args.checkpoint, device=args.device, backend=args.backend)
    except Exception as err:  # noqa: BLE001 - a bad device, folder, Hub id or file: say it, without a traceback
        parser.error(f"cannot load the {args.method!r} method: {err}")


def _process(job: Job, *, denoiser: Denoiser | None, args: argparse.Namespace, bar: tqdm) -> None:
    picture = read_picture(job.source)
    if denoiser is None:
        picture.pixels = salt_and_pepper_array(picture.pixels, amount=args.add_noise, seed=args.seed,
                                               per_channel=args.per_channel)
    else:
        def tiles(done: int, total: int) -> None:
            if total > 1:
                bar.set_postfix_str(f"{job.source.name}: tile {done}/{total}")

        if sends_to_moved(denoiser, picture.pixels):
            tqdm.write(f"{job.source}: its impulses moved off pure black and white (JPEG or resizing after the "
                       f"noise?), so the Impulse U-Net ran", file=sys.stderr)
        picture.pixels = denoiser.denoise(picture.pixels, progress=tiles)
    job.target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(picture, job.target)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _check_options(parser, args)
    sources, failures = expand_inputs(args.inputs)
    out_is_file = _out_is_file(parser, args.out, len(sources))
    suffix = args.suffix
    if suffix is None:
        suffix = "" if args.out is not None else NOISY_SUFFIX if args.add_noise is not None else DENOISED_SUFFIX
    jobs = plan_jobs(sources, out=args.out, out_is_file=out_is_file, suffix=suffix, keep_format=args.format == "keep",
                     in_place=args.in_place, overwrite=args.overwrite)
    failures += [(str(job.source), job.problem) for job in jobs if job.problem]
    todo = [job for job in jobs if not job.problem]
    denoiser = _build_denoiser(parser, args) if todo and args.add_noise is None else None
    label = f"{denoiser.name} on {denoiser.device}" if denoiser else f"noise {args.add_noise}"
    started, written = time.perf_counter(), 0
    with tqdm(todo, desc=label, unit="file", file=sys.stderr) as bar:
        for job in bar:
            try:
                _process(job, denoiser=denoiser, args=args, bar=bar)
            except FileError as err:
                failures.append((str(job.source), str(err)))
            except Exception as err:  # noqa: BLE001 - one odd file must not stop a batch: report it and go on
                failures.append((str(job.source), f"{type(err).__name__}: {err}"))
            else:
                written += 1
                tqdm.write(str(job.target), file=sys.stdout)
    verb = "noised" if args.add_noise is not None else "denoised"
    print(f"{verb} {written} of {written + len(failures)} in {time.perf_counter() - started:.1f} s"
          + (f"; {len(failures)} failed:" if failures else ""), file=sys.stderr)
    for name, why in failures:
        print(f"  {name}: {why}", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


def main(argv: list[str] | None = None, *, prog: str = "denoise") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        return run(args, parser)
    except KeyboardInterrupt:  # the file being written is only a temporary name: nothing half-written stays
        print("interrupted", file=sys.stderr)
        return 130
