"""The photo benchmark of issue 9: methods on real photos and on generated structure, as visitors' images are.

    python -m benchmarks.photos [--model DIR] [--previous DIR | --previous-rev REV] [--quick] [--out DIR]

Images, each with its clean original (uint8, native size, nothing resized):

* the held-out validation photos of `../shared/data/photos-train.zip` (`denoiser.photos`: 18 BSD500 +
  7 T91 photos, never trained on); skipped with a note when the collection is not there;
* four of scikit-image's bundled sample photos (astronaut, coffee, chelsea, camera; they ship inside the
  package, no download);
* the generated structure set (`denoiser.structure.structure_set`): 1-px lines, borders, text, line art,
  a star field and clipped regions, each with the mask of its structure pixels.

Scenarios: amount 0 (the clean image itself goes in: how much does a method change it?); per-pixel and
per-channel salt-and-pepper at 0.1-0.9 (`denoiser.noise.salt_and_pepper`, half salt); noisy then saved as
JPEG at quality 90 and 75 (Pillow, 4:2:0 chroma as Pillow's default), decoded, denoised, and scored against
the clean original; near-extreme impulses, whose values lie within 15/255 of black and white (each
impulse's channels are 1 - k/255 for salt or k/255 for pepper, k uniform in 0..15), per pixel.

Methods go through `denoiser.methods.METHODS`, as users call them (`.denoise` on a uint8 numpy image): the
default model (`--model`), the previous default (`--previous DIR`, or `--previous-rev REV` which takes
`checkpoints/default` from that git revision; run without the colour fill, as it shipped), the Impulse U-Net,
the adaptive median and the 3x3 median; the noisy input itself is a column too. `--without-fill` adds the
default model without its colour fill as a column.

Figures: PSNR and SSIM (`denoiser.metrics`), means over images. On the structure set also the structure
pixels alone: their PSNR (the MSE over the mask's pixels and channels), and the share of them that is
correct, every channel within 2/255 of the clean value (`CORRECT_TOLERANCE`; an 8-bit rounding or two,
no visible change), pooled over the images of each kind. At amount 0: PSNR and the share of pixels
identical in every channel. Time: seconds of the `denoise` call per image, mean per image set, after one
untimed warm-up call per method. The noise of each (scenario, image) pair is drawn from its own seed
(CRC-32 of the seed, scenario and image), so every method sees the same pixels and the figures repeat.

Results are printed as Markdown and written to `--out`/photos.md and photos.json, with the issue-9
targets checked for the default model (and the previous one) in a table of their own. Pictures of a few
cases (noisy | each method | clean, the central 192x192 pixels) go to `--out`/photos-crops/.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from denoiser import noise
from denoiser.benchmark import write_atomic
from denoiser.checkpoint import is_checkpoint
from denoiser.imaging import array_to_tensor, tensor_to_array
from denoiser.inference import BACKENDS, DEFAULT_CHECKPOINT, IMPULSE_CHECKPOINT
from denoiser.interface import Denoiser, select_device
from denoiser.methods import METHODS
from denoiser.metrics import MAX_PSNR_DB, psnr, psnr_ssim_in_bands
from denoiser.moved import moved_impulses
from denoiser.photos import PHOTOS_ZIP, load_photos, photo_names, validation_names
from denoiser.structure import structure_set

AMOUNTS = (0.1, 0.3, 0.5, 0.7, 0.9)
JPEG_QUALITIES = (90, 75)
JPEG_AMOUNTS = (0.1, 0.3)
NEAR_AMOUNTS = (0.1, 0.3, 0.5)
NEAR_RANGE = 15  # near-extreme impulses lie within this many 8-bit levels of 0 and 255
CORRECT_TOLERANCE = 2  # a structure pixel is correct when every channel is within 2/255 of the clean value
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "camera")
VALIDATION, SKIMAGE, STRUCTURE = "Validation photos", "scikit-image photos", "Structure set"
SETS = {"validation": VALIDATION, "skimage": SKIMAGE, "structure": STRUCTURE}
NOISY_INPUT = "Noisy input"
TARGET_KINDS = ("lines", "borders", "text")


# ----------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    key: str  # stable id in photos.json, e.g. "per-channel-0.3"
    label: str  # row label in the tables
    amount: float
    per_channel: bool = False
    jpeg_quality: int | None = None
    near_extreme: bool = False


def scenarios(*, quick: bool = False) -> list[Scenario]:
    """Every scenario in table order; `quick` keeps one of each family."""
    if quick:
        return [Scenario("identity", "Amount 0 (clean in)", 0.0),
                Scenario("per-pixel-0.3", "Per-pixel 0.3", 0.3),
                Scenario("per-channel-0.5", "Per-channel 0.5", 0.5, per_channel=True),
                Scenario("jpeg75-0.3", "0.3 then JPEG q75", 0.3, jpeg_quality=75),
                Scenario("near-0.3", "Near-extreme 0.3", 0.3, near_extreme=True)]
    out = [Scenario("identity", "Amount 0 (clean in)", 0.0)]
    out += [Scenario(f"per-pixel-{a}", f"Per-pixel {a}", a) for a in AMOUNTS]
    out += [Scenario(f"per-channel-{a}", f"Per-channel {a}", a, per_channel=True) for a in AMOUNTS]
    out += [Scenario(f"jpeg{q}-{a}", f"{a} then JPEG q{q}", a, jpeg_quality=q) for q in JPEG_QUALITIES
            for a in JPEG_AMOUNTS]
    out += [Scenario(f"near-{a}", f"Near-extreme {a}", a, near_extreme=True) for a in NEAR_AMOUNTS]
    return out


def noise_seed(seed: int, scenario: Scenario, image_name: str) -> int:
    return zlib.crc32(f"{seed}|{scenario.key}|{image_name}".encode())


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return np.asarray(decoded.convert("L" if image.ndim == 2 else "RGB")).copy()


def corrupt(clean: np.ndarray, scenario: Scenario, *, seed: int) -> np.ndarray:
    """The noisy uint8 image a method gets in this scenario (a copy of `clean` at amount 0)."""
    if scenario.amount == 0:
        return clean.copy()
    batch = array_to_tensor(clean).unsqueeze(0)  # (C, H, W) -> (1, C, H, W)
    generator = torch.Generator().manual_seed(seed)
    if scenario.near_extreme:
        # The same draw on a mid-grey image marks salt (1), pepper (0) and untouched (0.5) pixels.
        marks = noise.salt_and_pepper(torch.full_like(batch, 0.5), amount=scenario.amount, generator=generator)
        offset = torch.randint(0, NEAR_RANGE + 1, batch.shape, generator=generator).float() / 255.0
        noisy = torch.where(marks == 1.0, 1.0 - offset, torch.where(marks == 0.0, offset, batch))
    else:
        noisy = noise.salt_and_pepper(batch, amount=scenario.amount, per_channel=scenario.per_channel,
                                      generator=generator)
    out = tensor_to_array(noisy[0], like=clean)
    return _jpeg(out, scenario.jpeg_quality) if scenario.jpeg_quality else out


# ----------------------------------------------------------------------------- images


@dataclass(frozen=True)
class TestImage:
    set: str  # VALIDATION, SKIMAGE or STRUCTURE
    name: str
    clean: np.ndarray  # uint8 (H, W) or (H, W, 3)
    kind: str | None = None  # the structure kind (structure set only)
    mask: np.ndarray | None = None  # bool (H, W) structure pixels (structure set only)

    @property
    def size(self) -> str:
        h, w = self.clean.shape[:2]
        return f"{w}×{h} {'RGB' if self.clean.ndim == 3 else 'grey'}"


def validation_images(source: Path, *, limit: int | None = None) -> list[TestImage]:
    """The held-out validation photos (all, or `limit` of them spread over the list)."""
    names = validation_names(photo_names(source))
    if limit is not None and limit < len(names):
        names = [names[round(i * (len(names) - 1) / max(limit - 1, 1))] for i in range(limit)]
    return [TestImage(VALIDATION, name, image) for name, image in load_photos(names, source).items()]


def skimage_images(names: Iterable[str] = SKIMAGE_PHOTOS) -> list[TestImage]:
    """scikit-image's bundled photos (read from the installed package; these need no download)."""
    from skimage import data

    return [TestImage(SKIMAGE, name, np.ascontiguousarray(getattr(data, name)())) for name in names]


def structure_images(*, size: int = 256, seed: int = 0) -> list[TestImage]:
    return [TestImage(STRUCTURE, s.name, s.image, kind=s.kind, mask=s.mask)
            for s in structure_set(size=size, seed=seed)]


# ----------------------------------------------------------------------------- scores


@dataclass
class Record:
    set: str
    image: str
    kind: str | None
    scenario: str
    method: str
    psnr: float
    ssim: float
    identical: float  # share of pixels equal to the clean original in every channel
    seconds: float | None  # the denoise call; None for the noisy input
    megapixels: float
    structure_sse: float | None = None  # sum of squared errors over the structure pixels' channels, [0, 1] units
    structure_values: int | None = None  # how many values (pixels x channels) that sum covers
    structure_correct: int | None = None  # structure pixels with every channel within CORRECT_TOLERANCE
    structure_pixels: int | None = None
    moved: bool = False  # the noisy input's impulses moved off 0 and 1 (denoiser.moved): the default model's route

    @property
    def structure_psnr(self) -> float | None:
        if not self.structure_values:
            return None
        return _psnr_from_mse(self.structure_sse / self.structure_values)


def _psnr_from_mse(mse: float) -> float:
    return min(MAX_PSNR_DB, 10 * math.log10(1.0 / max(mse, 10 ** (-MAX_PSNR_DB / 10))))


def score(outputs: list[np.ndarray], image: TestImage) -> list[dict]:
    """The figures of each output against the clean original (all uint8, one shape), scored as one batch."""
    batch = torch.stack([array_to_tensor(x) for x in outputs])  # B x (C, H, W) -> (B, C, H, W)
    clean = array_to_tensor(image.clean).unsqueeze(0).expand_as(batch)  # (C, H, W) -> (B, C, H, W)
    if min(image.clean.shape[:2]) >= 6:
        psnrs, ssims = (t.tolist() for t in psnr_ssim_in_bands(batch, clean))
    else:  # SSIM's 11x11 window needs at least 6x6 pixels
        psnrs, ssims = psnr(batch, clean).tolist(), [math.nan] * len(outputs)
    figures = []
    for out, p, s in zip(outputs, psnrs, ssims):
        diff = np.abs(out.astype(np.int16) - image.clean.astype(np.int16))
        diff = diff[..., None] if diff.ndim == 2 else diff  # (H, W) -> (H, W, 1)
        one = {"psnr": p, "ssim": s, "identical": float((diff == 0).all(axis=-1).mean())}
        if image.mask is not None and image.mask.any():
            err = diff[image.mask].astype(np.float64) / 255.0  # (pixels in the mask, C)
            one |= {"structure_sse": float((err**2).sum()), "structure_values": int(err.size),
                    "structure_correct": int((diff[image.mask] <= CORRECT_TOLERANCE).all(axis=-1).sum()),
                    "structure_pixels": int(image.mask.sum())}
        figures.append(one)
    return figures


class _NoisyInput(Denoiser):
    name = NOISY_INPUT

    def denoise(self, image: np.ndarray, *, progress=None) -> np.ndarray:
        return image

    def denoise_batch(self, images: torch.Tensor, *, progress=None) -> torch.Tensor:
        return images


# The cases whose pictures are kept (`--crops`): what the structure set and a JPEG-noisy photo look like.
CROP_CASES = {(STRUCTURE, "per-pixel-0.1"), (STRUCTURE, "per-pixel-0.3"), (VALIDATION, "jpeg75-0.3"),
              (VALIDATION, "per-channel-0.5"),
              (SKIMAGE, "per-pixel-0.5")}
CROP_SIDE = 192


def crop_strip(noisy: np.ndarray, outputs: list[np.ndarray], clean: np.ndarray) -> np.ndarray:
    """noisy | each output | clean, side by side: the central CROP_SIDE x CROP_SIDE pixels, RGB uint8."""
    h, w = clean.shape[:2]
    top, left = max(0, (h - CROP_SIDE) // 2), max(0, (w - CROP_SIDE) // 2)
    tiles = []
    for image in (noisy, *outputs, clean):
        tile = image[top:top + CROP_SIDE, left:left + CROP_SIDE]
        tiles.append(np.repeat(tile[..., None], 3, axis=-1) if tile.ndim == 2 else tile)  # (H, W) -> (H, W, 3)
        tiles.append(np.full((tile.shape[0], 4, 3), 255, dtype=np.uint8))  # a white gap
    return np.concatenate(tiles[:-1], axis=1)


@torch.inference_mode()
def run(images: list[TestImage], methods: dict[str, Denoiser], scenario_list: list[Scenario], *, seed: int = 0,
        progress: bool = True, crops: dict[str, np.ndarray] | None = None) -> list[Record]:
    """Every method on every image in every scenario; one progress bar over (image, scenario) pairs.

    `crops`, when given, receives a `crop_strip` (noisy | methods | clean) for the first image of each set
    in each of CROP_CASES (every image of the structure set), keyed by a file name.
    """
    if not images:
        raise ValueError("no images to benchmark")
    for method in methods.values():  # warm-up: session setup and first-call costs are not per-image time
        method.denoise(images[0].clean)
    columns: dict[str, Denoiser] = {NOISY_INPUT: _NoisyInput(), **methods}
    records = []
    bar = tqdm(total=len(images) * len(scenario_list), desc="photo benchmark", unit="case", disable=not progress)
    for image in images:
        megapixels = image.clean.shape[0] * image.clean.shape[1] / 1e6
        for scenario in scenario_list:
            bar.set_postfix_str(f"{image.set}: {image.name}, {scenario.label}")
            noisy = corrupt(image.clean, scenario, seed=noise_seed(seed, scenario, f"{image.set}/{image.name}"))
            moved = bool(moved_impulses(array_to_tensor(noisy).unsqueeze(0)).item())  # (C, H, W) -> (1, C, H, W)
            outputs, seconds = [], []
            for label, method in columns.items():
                tic = time.perf_counter()
                out = method.denoise(noisy)
                seconds.append(None if label == NOISY_INPUT else time.perf_counter() - tic)
                if out.shape != noisy.shape or out.dtype != np.uint8:
                    raise RuntimeError(f"{label} returned {out.shape} {out.dtype} for {noisy.shape} uint8")
                outputs.append(out)
            first = image is next(i for i in images if i.set == image.set)
            if crops is not None and (image.set, scenario.key) in CROP_CASES and (first or image.set == STRUCTURE):
                name = "".join(c if c.isalnum() else "-" for c in f"{image.set}-{image.name}-{scenario.key}")
                crops[f"{name.lower()}.png"] = crop_strip(noisy, outputs[1:], image.clean)
            for label, took, figures in zip(columns, seconds, score(outputs, image)):
                records.append(Record(set=image.set, image=image.name, kind=image.kind, scenario=scenario.key,
                                      method=label, seconds=took, megapixels=megapixels, moved=moved, **figures))
            bar.update()
    bar.close()
    return records


# ----------------------------------------------------------------------------- tables


@dataclass
class Summary:
    """Means of the records by (set, scenario, method) and structure figures by (kind, scenario, method)."""

    records: list[Record]
    quality: dict[tuple[str, str, str], tuple[float, float]] = field(default_factory=dict)  # mean PSNR, SSIM
    identity: dict[tuple[str, str], tuple[float, float, float]] = field(default_factory=dict)  # mean, min PSNR; identical
    structure: dict[tuple[str, str, str], tuple[float, float]] = field(default_factory=dict)  # % correct, PSNR
    seconds: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # s/image, s/megapixel

    def __post_init__(self) -> None:
        groups: dict[tuple, list[Record]] = {}
        for r in self.records:
            groups.setdefault((r.set, r.scenario, r.method), []).append(r)
        for key, rs in groups.items():
            self.quality[key] = (float(np.mean([r.psnr for r in rs])), float(np.nanmean([r.ssim for r in rs])))
            if key[1] == "identity":
                self.identity[(key[0], key[2])] = (self.quality[key][0], min(r.psnr for r in rs),
                                                   float(np.mean([r.identical for r in rs])))
        kinds: dict[tuple, list[Record]] = {}
        for r in self.records:
            if r.structure_pixels:
                kinds.setdefault((r.kind, r.scenario, r.method), []).append(r)
        for key, rs in kinds.items():
            correct = sum(r.structure_correct for r in rs) / sum(r.structure_pixels for r in rs)
            mse = sum(r.structure_sse for r in rs) / sum(r.structure_values for r in rs)
            self.structure[key] = (100 * correct, _psnr_from_mse(mse))
        timed: dict[tuple, list[Record]] = {}
        for r in self.records:
            if r.seconds is not None:
                timed.setdefault((r.set, r.method), []).append(r)
        for key, rs in timed.items():
            self.seconds[key] = (float(np.mean([r.seconds for r in rs])),
                                 sum(r.seconds for r in rs) / sum(r.megapixels for r in rs))

    def sets(self) -> list[str]:
        return list(dict.fromkeys(r.set for r in self.records))

    def methods(self) -> list[str]:
        return list(dict.fromkeys(r.method for r in self.records))


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def _scenario_table(summary: Summary, figures: dict, group: str, scenario_list: list[Scenario],
                    cell: Callable[[tuple], str]) -> str:
    """One row per scenario, one column per method: `figures[(group, scenario key, method)]` through `cell`."""
    methods = summary.methods()
    rows = [[s.label] + ["–" if (c := figures.get((group, s.key, m))) is None else cell(c) for m in methods]
            for s in scenario_list]
    return _table(["Scenario", *methods], rows)


def quality_markdown(summary: Summary, set_name: str, scenario_list: list[Scenario]) -> str:
    return _scenario_table(summary, summary.quality, set_name, scenario_list, lambda c: f"{c[0]:.2f} / {c[1]:.3f}")


def identity_markdown(summary: Summary) -> str:
    methods = [m for m in summary.methods() if m != NOISY_INPUT]
    rows = []
    for set_name in summary.sets():
        cells = [summary.identity.get((set_name, m)) for m in methods]
        rows.append([set_name] + ["–" if c is None else f"{c[0]:.2f} ({c[1]:.2f}) / {100 * c[2]:.2f}%" for c in cells])
    return _table(["Images", *methods], rows)


def moved_markdown(summary: Summary, scenario_list: list[Scenario]) -> str:
    """Per scenario and set: how many images had impulses that moved, which the default model hands on."""
    sets, first = summary.sets(), summary.methods()[0]
    counts: dict[tuple[str, str], list[bool]] = {}
    for r in summary.records:
        if r.method == first:  # one record per (image, scenario)
            counts.setdefault((r.set, r.scenario), []).append(r.moved)
    rows = [[s.label] + [f"{sum(c)} / {len(c)}" if (c := counts.get((n, s.key))) else "–" for n in sets]
            for s in scenario_list]
    return _table(["Scenario", *sets], rows)


def structure_markdown(summary: Summary, kind: str, scenario_list: list[Scenario]) -> str:
    return _scenario_table(summary, summary.structure, kind, scenario_list, lambda c: f"{c[0]:.1f}% / {c[1]:.2f}")


def time_markdown(summary: Summary, images: list[TestImage]) -> str:
    methods = [m for m in summary.methods() if m != NOISY_INPUT]
    rows = []
    for set_name in summary.sets():
        members = [i for i in images if i.set == set_name]
        sizes = sorted({i.size for i in members})
        label = f"{set_name} ({len(members)}; {', '.join(sizes[:3])}{', ...' if len(sizes) > 3 else ''})"
        cells = [summary.seconds.get((set_name, m)) for m in methods]
        rows.append([label] + ["–" if c is None else f"{c[0]:.3f} s ({c[1]:.2f} s/MP)" for c in cells])
    return _table(["Images", *methods], rows)


# ----------------------------------------------------------------------------- issue 9's targets


@dataclass(frozen=True)
class Target:
    label: str
    value: float | None  # the measured figure; None when its images or scenario were not run
    goal: float
    unit: str

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.value >= self.goal


def targets(summary: Summary, model: str, *, classic: tuple[str, ...]) -> list[Target]:
    """Issue 9's photo targets for one learned method, measured on this run's images."""
    q, out = summary.quality, []

    def gain(scenario: str, against: tuple[str, ...]) -> float | None:
        mine = q.get((VALIDATION, scenario, model))
        others = [q[(VALIDATION, scenario, m)][0] for m in against if (VALIDATION, scenario, m) in q]
        return None if mine is None or not others else mine[0] - max(others)

    adaptive = tuple(m for m in classic if "adaptive" in m.lower())
    for amount, goal in ((0.3, 7.4), (0.5, 7.8), (0.7, 10.0)):
        out.append(Target(f"Validation photos, per-channel {amount}: gain over the adaptive median",
                          gain(f"per-channel-{amount}", adaptive), goal, "dB"))
    for quality in JPEG_QUALITIES:
        for amount in JPEG_AMOUNTS:
            out.append(Target(f"Validation photos, {amount} then JPEG q{quality}: gain over the best classic filter",
                              gain(f"jpeg{quality}-{amount}", classic), 3.0, "dB"))
    amounts = [f"per-{mode}-{a}" for mode in ("pixel", "channel") for a in (0.1, 0.3, 0.5)]
    for kind in TARGET_KINDS:
        found = [summary.structure[(kind, s, model)][0] for s in amounts if (kind, s, model) in summary.structure]
        out.append(Target(f"Structure set, {kind}: fewest pixels correct, per-pixel and per-channel 0.1-0.5",
                          min(found) if found else None, 95.0, "%"))
    for set_name in summary.sets():
        found = summary.identity.get((set_name, model))
        out.append(Target(f"{set_name}, amount 0: lowest PSNR of one image", found and found[1], 50.0, "dB"))
        out.append(Target(f"{set_name}, amount 0: pixels identical", found and 100 * found[2], 99.5, "%"))
    return out


def targets_markdown(summary: Summary, models: list[str], *, classic: tuple[str, ...]) -> str:
    per_model = {m: targets(summary, m, classic=classic) for m in models}
    labels = [t.label for t in next(iter(per_model.values()))]
    rows = []
    for i, label in enumerate(labels):
        first = per_model[models[0]][i]
        cells = []
        for m in models:
            t = per_model[m][i]
            figure = "not run" if t.value is None else f"{t.value:{'+' if 'gain' in label else ''}.2f} {t.unit}"
            cells.append(figure if t.value is None else f"{figure} {'met' if t.met else 'MISSED'}")
        rows.append([label, f"≥ {first.goal:g} {first.unit}", *cells])
    return _table(["Target (issue 9)", "Goal", *models], rows)


def report_markdown(summary: Summary, images: list[TestImage], scenario_list: list[Scenario], *, meta: dict,
                    learned: list[str], classic: tuple[str, ...], notes: list[str]) -> str:
    parts = ["# Photo benchmark", "",
             f"`{meta['command']}`. Device: {meta['device']} ({meta['device_name']}), torch {meta['torch']}, "
             f"{meta['threads']} threads; backends: {meta['backends'] or '–'}; noise seed {meta['seed']}; "
             f"{meta['seconds']:.0f} s in all.", ""]
    parts += [f"- {note}" for note in notes]
    parts += ["", "## Time per image", "", "Mean seconds of one `denoise` call (uint8 numpy in and out), over "
              "every scenario, and seconds per megapixel.", "", time_markdown(summary, images), ""]
    if learned:
        parts += ["## Issue 9 targets", "", targets_markdown(summary, learned, classic=classic), ""]
    parts += ["## Amount 0: the clean image in", "", "Mean PSNR (lowest image's PSNR) / share of pixels "
              "identical in every channel.", "", identity_markdown(summary), ""]
    parts += ["## Impulses that moved", "", "Images whose impulses moved off exact black and white "
              "(`denoiser.moved`), of all the set's images: the default model hands these to its `moved/` model, "
              "the Impulse U-Net, and runs its own network on the rest.", "",
              moved_markdown(summary, scenario_list), ""]
    for set_name in summary.sets():
        count = len([i for i in images if i.set == set_name])
        parts += [f"## {set_name} ({count} images): PSNR dB / SSIM", "",
                  quality_markdown(summary, set_name, scenario_list), ""]
    kinds = list(dict.fromkeys(r.kind for r in summary.records if r.structure_pixels))
    if kinds:
        parts += ["## Structure pixels", "", f"Per kind of structure: % of its pixels correct (every channel "
                  f"within {CORRECT_TOLERANCE}/255 of the clean value) / PSNR dB over those pixels alone, pooled "
                  "over the kind's images.", ""]
        for kind in kinds:
            names = [i.name for i in images if i.kind == kind]
            parts += [f"### {kind} ({', '.join(names)})", "", structure_markdown(summary, kind, scenario_list), ""]
    return "\n".join(parts).rstrip() + "\n"


def records_json(records: list[Record]) -> list[dict]:
    out = []
    for r in records:
        row = {k: v for k, v in vars(r).items() if v is not None}
        if r.structure_psnr is not None:
            row["structure_psnr"] = r.structure_psnr
        if isinstance(row.get("ssim"), float) and math.isnan(row["ssim"]):
            row["ssim"] = None
        out.append(row)
    return out


def records_from_json(rows: list[dict]) -> list[Record]:
    """The records of a photos.json (`records_json`'s rows) back as `Record`s; an unscored SSIM is NaN again."""
    records = []
    for row in rows:
        values = {f.name: row.get(f.name) for f in fields(Record)}  # records_json drops Nones
        if values["ssim"] is None:
            values["ssim"] = math.nan
        records.append(Record(**values))
    return records


# ----------------------------------------------------------------------------- the command


REPO = Path(__file__).resolve().parents[1]
PREVIOUS = "Previous default"
CLASSIC_METHODS = ("adaptive_median", "median3")
QUICK_VALIDATION = 3
QUICK_SKIMAGE = ("chelsea",)
QUICK_STRUCTURE_SIZE = 128


def checkpoint_from_git(rev: str, into: Path, *, folder: str = "checkpoints/default") -> Path:
    """`folder` as it was at git revision `rev`, sub-folders (a `colour/` network) included, written into
    `into` (`git show REV:PATH` for each file)."""
    def git(*args: str) -> bytes:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True)
        if done.returncode != 0:
            raise ValueError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout

    names = git("ls-tree", "-r", "--name-only", f"{rev}:{folder}").decode().split()
    if not names:
        raise ValueError(f"{folder} is empty at git revision {rev}")
    into.mkdir(parents=True, exist_ok=True)
    for name in names:
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        (into / name).write_bytes(git("show", f"{rev}:{folder}/{name}"))
    if not is_checkpoint(into):
        raise ValueError(f"{folder} at git revision {rev} is not a checkpoint (no config.json and weights)")
    return into


def build_methods(*, model: Path, previous: Path | None, device: torch.device, backend: str,
                  impulse: Path | None = None,
                  without_fill: bool = False,
                  without_strokes: bool = False) -> tuple[dict[str, Denoiser], list[str], list[str]]:
    """(methods by column label, the learned columns' labels, notes on what was skipped). `without_fill` adds
    the default model without `denoiser.colour`'s re-estimate (the "no_colour_fill" method) as a column,
    `without_strokes` the default model without `denoiser.strokes` (the "no_strokes" method). The previous
    default runs as the default method does today, the colour fill and the stroke rule on."""
    methods: dict[str, Denoiser] = {}
    learned, notes, shared = [], [], {}  # shared: columns of the same checkpoint hold its networks once
    columns = ((METHODS["default"].label, "default", model),
               (METHODS["no_colour_fill"].label, "no_colour_fill", model if without_fill else None),
               (METHODS["no_strokes"].label, "no_strokes", model if without_strokes else None),
               (PREVIOUS, "default", previous), (METHODS["impulse"].label, "impulse", impulse))
    for label, key, source in columns:
        if source is None:
            continue
        if not is_checkpoint(source):
            notes.append(f"{label} skipped: no checkpoint at {source}")
            continue
        methods[label] = METHODS[key].build(source=source, device=device, backend=backend, shared=shared)
        methods[label].name = label
        learned.append(label)
        notes.append(f"{label}: {source} ({methods[label].backend})")
    for key in CLASSIC_METHODS:
        methods[METHODS[key].label] = METHODS[key].build(device=device)
    return methods, learned, notes


def load_images(*, sets: list[str], photos: Path, quick: bool, structure_size: int,
                seed: int) -> tuple[list[TestImage], list[str]]:
    images, notes = [], []
    if "validation" in sets:
        if Path(photos).exists():
            images += validation_images(photos, limit=QUICK_VALIDATION if quick else None)
        else:
            notes.append(f"validation photos skipped: no photo collection at {photos}")
    if "skimage" in sets:
        try:
            images += skimage_images(QUICK_SKIMAGE if quick else SKIMAGE_PHOTOS)
        except ImportError:
            notes.append("scikit-image photos skipped: scikit-image is not installed (pip install -r requirements-test.txt)")
    if "structure" in sets:
        images += structure_images(size=structure_size, seed=seed)
    return images, notes


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _parse_args(argv: list[str] | None, prog: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_CHECKPOINT,
                        help="the default model's checkpoint folder (default: checkpoints/default)")
    parser.add_argument("--impulse", type=Path, default=IMPULSE_CHECKPOINT,
                        help="the Impulse U-Net's checkpoint folder (default: checkpoints/default/moved)")
    previous = parser.add_mutually_exclusive_group()
    previous.add_argument("--previous", type=Path, default=None,
                          help="the previous default's checkpoint folder, e.g. one copied under benchmark-results/")
    previous.add_argument("--previous-rev", default=None, metavar="REV",
                          help="take the previous default from checkpoints/default at this git revision")
    parser.add_argument("--photos", type=Path, default=PHOTOS_ZIP,
                        help="the photo collection, .zip or folder (default: ../shared/data/photos-train.zip)")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS), help="image sets to run")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_VALIDATION} validation photos, {', '.join(QUICK_SKIMAGE)}, "
                             f"a smaller structure set, one scenario of each family")
    parser.add_argument("--structure-size", type=int, default=None,
                        help=f"side of the structure images in px (default 256; {QUICK_STRUCTURE_SIZE} with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the noise and of the structure set")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu; 'auto' picks CUDA when present)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="how the learned methods run (default auto: ONNX Runtime on the CPU when it can)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"), help="folder for photos.md / .json")
    parser.add_argument("--without-fill", action="store_true",
                        help="add a column: the default model without its colour fill, each colour channel as "
                             "the network repainted it (the no_colour_fill method; denoiser.colour)")
    parser.add_argument("--without-strokes", action="store_true",
                        help="add a column: the default model without its stroke rule, which gives black and white "
                             "strokes too large to be noise their values back (the no_strokes method; "
                             "denoiser.strokes)")
    parser.add_argument("--no-crops", action="store_true",
                        help="do not write the pictures (noisy | methods | clean) to OUT/photos-crops/")
    args = parser.parse_args(argv)
    if args.structure_size is None:
        args.structure_size = QUICK_STRUCTURE_SIZE if args.quick else 256
    if args.structure_size < 32:
        parser.error("--structure-size must be at least 32")
    try:
        args.device = select_device(args.device)
    except ValueError as err:
        parser.error(f"--device: {err}")
    return args


def main(argv: list[str] | None = None, *, prog: str = "python -m benchmarks.photos") -> dict:
    args = _parse_args(argv, prog)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="previous-default-") as tmp:
        try:
            previous = args.previous
            if args.previous_rev:
                previous = checkpoint_from_git(args.previous_rev, Path(tmp) / "checkpoint")
            methods, learned, notes = build_methods(model=args.model, previous=previous, impulse=args.impulse,
                                                    device=args.device, backend=args.backend,
                                                    without_fill=args.without_fill,
                                                    without_strokes=args.without_strokes)
            images, image_notes = load_images(sets=args.sets, photos=args.photos, quick=args.quick,
                                              structure_size=args.structure_size, seed=args.seed)
        except ValueError as exc:  # an unreadable checkpoint, revision or photo collection: say which
            raise SystemExit(f"error: {exc}") from exc
        notes += image_notes
        if args.previous_rev:
            notes.append(f"{PREVIOUS} taken from checkpoints/default at git revision {args.previous_rev}")
        for note in notes:
            print(f"note: {note}", flush=True)
        if not images:
            raise SystemExit("error: no images to benchmark (see the notes above)")
        scenario_list = scenarios(quick=args.quick)
        crops: dict[str, np.ndarray] | None = None if args.no_crops else {}
        records = run(images, methods, scenario_list, seed=args.seed, crops=crops)
    summary = Summary(records)
    classic = tuple(METHODS[k].label for k in CLASSIC_METHODS)
    meta = {"command": " ".join([prog, *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
            "device": str(args.device), "device_name": _device_name(args.device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "seed": args.seed, "quick": args.quick,
            "backends": ", ".join(f"{m}: {methods[m].backend}" for m in learned),
            "images": {s: [i.name for i in images if i.set == s] for s in summary.sets()},
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": time.perf_counter() - started}
    markdown = report_markdown(summary, images, scenario_list, meta=meta, learned=learned, classic=classic,
                               notes=notes)
    results = {"meta": meta, "notes": notes, "correct_tolerance": CORRECT_TOLERANCE,
               "scenarios": [vars(s) for s in scenario_list],
               "targets": {m: [vars(t) | {"met": t.met} for t in targets(summary, m, classic=classic)]
                           for m in learned},
               "records": records_json(records)}
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "photos.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    write_atomic(args.out / "photos.md", markdown)
    if crops:
        folder = args.out / "photos-crops"
        folder.mkdir(exist_ok=True)
        for name, strip in crops.items():
            Image.fromarray(strip).save(folder / name)
    print(markdown)
    if crops:
        print(f"pictures (noisy | {' | '.join(methods)} | clean) written to {args.out / 'photos-crops'}/")
    return results


if __name__ == "__main__":
    main(prog="python -m denoiser.photo_benchmark")
