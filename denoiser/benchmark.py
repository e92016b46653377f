"""The benchmark: every method on the CIFAR-10 test split, at every noise setting, with fixed seeds.

    python -m denoiser.benchmark --data ../shared/data/cifar10-images.zip [--limit N] [--out DIR] [--device cpu]
                                 [--backend auto|torch|onnx ...]

Methods: the noisy input itself, 3x3 and 5x5 medians, the Hwang-Haddad adaptive median (max window 7),
the article's autoencoder checkpoint, the default model and the Impulse U-Net (its learned detector with
the default model's U-Net); a checkpoint that is not there is skipped with a note. Grayscale noise settings: the article's rule at intensity 0.2 on article-normalized images
(as the Paperspace article evaluates), and plain salt-and-pepper at amounts 0.1-0.9, half salt, on
channel-mean grayscale. Two colour tables run the learned models and the per-channel filters on the RGB
images at the same amounts: with per-pixel salt-and-pepper (a pixel turns white or black whole), and with
per-channel salt-and-pepper (each colour value is hit on its own).

Each setting's noisy images are drawn once, from their own seeded torch.Generator, so every method sees
the same pixels and the figures repeat exactly from run to run and for any batch size. PSNR and SSIM are
means over images (`denoiser.metrics`). Speed is images/s of the method call alone (inputs already on the
device, metrics not included), the median over batches, after one untimed warm-up batch per method.
The learned methods run on `--backend` (default auto: ONNX Runtime on the CPU when it can be used);
naming several (`--backend torch onnx`) runs each learned method once per backend, as its own column,
so both backends are measured in one run, on the same noisy images, interleaved.
Results go to `results.json` and `results.md` in --out, and the tables are printed as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
from tqdm import tqdm

from denoiser import data, noise
from denoiser.checkpoint import is_checkpoint
from denoiser.inference import ARTICLE_CHECKPOINT, BACKENDS, DEFAULT_CHECKPOINT, IMPULSE_CHECKPOINT
from denoiser.interface import Denoiser, Progress, select_device
from denoiser.methods import METHODS
from denoiser.metrics import psnr, ssim

AMOUNTS = (0.1, 0.3, 0.5, 0.7, 0.9)
ARTICLE_INTENSITY = 0.2
NOISY_INPUT = "Noisy input"
ARTICLE_METHOD = METHODS["article"].label
MODEL_METHOD = METHODS["default"].label
GRAY_METHODS = ("median3", "median5", "adaptive_median", "article", "default", "impulse")
# The article's model knows only 32x32 grayscale, so the colour table is the default model against the
# per-channel filters. The default model without its colour fill (`denoiser.colour`) is the same model on one
# channel, so it is a column of this table only.
COLOR_METHODS = ("median3", "adaptive_median", "default", "no_colour_fill", "impulse")


class NoisyInput(Denoiser):
    """The do-nothing baseline: its figures are those of the noisy images themselves."""

    name = NOISY_INPUT

    def __init__(self, *, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    def denoise_batch(self, images: torch.Tensor, *, progress: Progress | None = None) -> torch.Tensor:
        return images


@dataclass
class NoiseSetting:
    key: str  # stable id for results.json, e.g. "amount-0.3"
    label: str  # row label in the tables
    prepare: Callable[[torch.Tensor], torch.Tensor]  # uint8 (N, 3, H, W) -> clean float (N, C, H, W)
    corrupt: Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # clean -> noisy, same shape


@dataclass
class Row:
    method: str
    noise: str
    noise_key: str
    psnr: float
    ssim: float
    images: int
    images_per_s: float | None  # None for the noisy input, which does no work


@dataclass
class Table:
    title: str
    rows: list[Row] = field(default_factory=list)
    batch_rates: dict[str, list[float]] = field(default_factory=dict)  # method -> images/s of every batch


def _article_gray(images_u8: torch.Tensor) -> torch.Tensor:
    return data.article_normalize(data.to_gray(images_u8))


def _amount_setting(amount: float, *, prepare: Callable[[torch.Tensor], torch.Tensor],
                    per_channel: bool = False) -> NoiseSetting:
    # Per-pixel impulses (noise.salt_and_pepper's default) turn a colour pixel white or black whole.
    key = f"per-channel-{amount}" if per_channel else f"amount-{amount}"
    return NoiseSetting(key, f"Amount {amount}", prepare,
                        lambda x, g: noise.salt_and_pepper(x, amount=amount, salt_share=0.5, per_channel=per_channel,
                                                           generator=g))


def gray_settings() -> list[NoiseSetting]:
    """The article's rule on article-normalized images, then plain salt-and-pepper on channel-mean gray."""
    article = NoiseSetting(f"article-{ARTICLE_INTENSITY}", f"Article rule {ARTICLE_INTENSITY}", _article_gray,
                           lambda x, g: noise.article_noise(x, intensity=ARTICLE_INTENSITY, generator=g))
    return [article] + [_amount_setting(amount, prepare=data.to_gray) for amount in AMOUNTS]


def color_settings(*, per_channel: bool = False) -> list[NoiseSetting]:
    return [_amount_setting(amount, prepare=data.to_float, per_channel=per_channel) for amount in AMOUNTS]


def build_methods(*, sources: dict[str, Path], device: torch.device, backends: tuple[str, ...] = ("auto",),
                  keys: tuple[str, ...] = GRAY_METHODS + COLOR_METHODS) -> tuple[dict[str, list[Denoiser]], list[str]]:
    """Every benchmarked method by its key (a learned one once per backend), and a note for each learned one
    whose checkpoint is missing. With several backends, a learned method's name says which one it asked for."""
    built, notes = {}, []
    for key in dict.fromkeys(keys):
        m = METHODS[key]
        if not m.learned:
            built[key] = [m.build(device=device)]
        elif not is_checkpoint(sources[key]):
            notes.append(f"{m.label} skipped: no checkpoint at {sources[key]}")
        else:
            built[key] = [m.build(source=sources[key], device=device, backend=b) for b in backends]
            if len(backends) > 1:
                for denoiser, backend in zip(built[key], backends):
                    denoiser.name = f"{m.label} [{backend}]"
    return built, notes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_method(method: Denoiser, clean: torch.Tensor, noisy: torch.Tensor, *, batch_size: int,
                device: torch.device, bar: tqdm) -> tuple[torch.Tensor, list[float]]:
    """Per-image (PSNR, SSIM) as (N, 2), and the images/s of every batch, timing only the method call."""
    scores, rates = [], []
    for start in range(0, len(clean), batch_size):
        target = clean[start:start + batch_size].to(device)
        inputs = noisy[start:start + batch_size].to(device)
        _sync(device)
        tic = time.perf_counter()
        out = method.denoise_batch(inputs)
        _sync(device)
        rates.append(len(inputs) / max(time.perf_counter() - tic, 1e-9))
        if out.shape != inputs.shape:
            raise RuntimeError(f"{method.name} returned shape {tuple(out.shape)} for {tuple(inputs.shape)}")
        out = out.float().clamp(0, 1)
        scores.append(torch.stack([psnr(out, target), ssim(out, target)], dim=1).cpu())  # 2 x (B,) -> (B, 2)
        bar.update()
    return torch.cat(scores), rates


@torch.inference_mode()
def run_table(table: Table, methods: dict[str, Denoiser], settings: list[NoiseSetting], images_u8: torch.Tensor,
              *, batch_size: int, seed: int, device: torch.device) -> None:
    """Fill `table` with one row per (noise, method); shows one progress bar for the whole table."""
    n = len(images_u8)
    bar = tqdm(total=len(settings) * len(methods) * -(-n // batch_size), desc=table.title, unit="batch")
    for index, setting in enumerate(settings):
        clean = setting.prepare(images_u8)
        noisy = setting.corrupt(clean, torch.Generator().manual_seed(seed + index))
        for label, method in methods.items():
            bar.set_postfix_str(f"{setting.label}, {label}")
            if label not in table.batch_rates:
                table.batch_rates[label] = []
                method.denoise_batch(noisy[:batch_size].to(device))  # warm-up: one-time setup is not speed
            scores, rates = _run_method(method, clean, noisy, batch_size=batch_size, device=device, bar=bar)
            mean_psnr, mean_ssim = scores.double().mean(dim=0).tolist()
            work = label != NOISY_INPUT
            if work:
                table.batch_rates[label].extend(rates)
            table.rows.append(Row(label, setting.label, setting.key, mean_psnr, mean_ssim, n,
                                  statistics.median(rates) if work else None))
    bar.close()


def subset(images_u8: torch.Tensor, *, limit: int | None, seed: int) -> torch.Tensor:
    """The first `limit` images of a seeded shuffle, kept in file order, so a small run spans all classes."""
    if not limit or limit >= len(images_u8):
        return images_u8
    keep = torch.randperm(len(images_u8), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    return images_u8[keep]


# ----------------------------------------------------------------------------- reporting


def _cell(row: Row | None) -> str:
    return "–" if row is None else f"{row.psnr:.2f} / {row.ssim:.3f}"


def quality_markdown(table: Table) -> str:
    methods = list(dict.fromkeys(r.method for r in table.rows))
    noises = list(dict.fromkeys(r.noise for r in table.rows))
    found = {(r.method, r.noise): r for r in table.rows}
    lines = [f"| Noise | {' | '.join(methods)} |", "| --- |" + " --- |" * len(methods)]
    for noise_label in noises:
        lines.append(f"| {noise_label} | " + " | ".join(_cell(found.get((m, noise_label))) for m in methods) + " |")
    return "\n".join(lines)


def speed_markdown(tables: list[Table]) -> str:
    methods = list(dict.fromkeys(m for t in tables for m in t.batch_rates if m != NOISY_INPUT))
    lines = [f"| Method | {' | '.join(t.title for t in tables)} |", "| --- |" + " ---: |" * len(tables)]
    for method in methods:
        cells = [f"{statistics.median(t.batch_rates[method]):,.0f}" if t.batch_rates.get(method) else "–"
                 for t in tables]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_markdown(tables: list[Table], meta: dict, notes: list[str]) -> str:
    size = meta["image_size"]
    parts = [f"# Benchmark: {meta['images']:,} images of {meta['data']}", "",
             f"PSNR (dB) / SSIM, mean over images. Device: {meta['device']} ({meta['device_name']}), "
             f"torch {meta['torch']}, {meta['threads']} threads, batches of {meta['batch_size']}, "
             f"noise seed {meta['seed']}; {meta['seconds']:.0f} s in all.", ""]
    if meta.get("backends"):  # ONNX Runtime sessions use as many intra-op threads as torch
        parts[-1:] = ["Backends: " + ", ".join(f"{name}: {b}" for name, b in meta["backends"].items()) + ".", ""]
    for table in tables:
        parts += [f"## {table.title}", "", quality_markdown(table), ""]
    parts += [f"## Speed: images/s ({size}, median over batches)", "", speed_markdown(tables), ""]
    parts += [f"- {note}" for note in notes]
    return "\n".join(parts).rstrip() + "\n"


def device_name(device: torch.device) -> str:
    """The GPU's or the CPU's model name, for reports."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m denoiser.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True,
                        help="CIFAR-10 source: the .zip or ImageFolder folder with test/<class>/<image>, "
                             "a folder holding cifar-10-batches-py, or 'cifar10' to download")
    parser.add_argument("--limit", type=int, default=None, help="use N test images (a seeded sample of all classes)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"), help="folder for results.json / .md")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: CUDA when present)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="base seed of the noise draws")
    parser.add_argument("--article", type=Path, default=ARTICLE_CHECKPOINT, help="article checkpoint folder")
    parser.add_argument("--model", type=Path, default=DEFAULT_CHECKPOINT, help="default model checkpoint folder")
    parser.add_argument("--impulse", type=Path, default=IMPULSE_CHECKPOINT, help="Impulse U-Net checkpoint folder")
    parser.add_argument("--no-color", action="store_true", help="skip the colour tables")
    parser.add_argument("--backend", nargs="+", choices=BACKENDS, default=["auto"],
                        help="how the learned methods run (default auto: ONNX Runtime on the CPU when it can); "
                             "several, e.g. --backend torch onnx, measure each in the same run")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    args.backend = tuple(dict.fromkeys(args.backend))
    try:
        args.device = select_device(args.device)
    except ValueError as err:
        parser.error(f"--device: {err}")
    return args


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # readers see the old file or the new one, never half of it


def main(argv: list[str] | None = None) -> dict:
    args = _parse_args(argv)
    device = args.device
    started = time.perf_counter()
    try:
        images_u8 = subset(data.load_split(args.data, split="test").images, limit=args.limit, seed=args.seed)
        sources = {"article": args.article, "default": args.model, "no_colour_fill": args.model,
                   "impulse": args.impulse}
        keys = GRAY_METHODS if args.no_color else GRAY_METHODS + COLOR_METHODS
        built, notes = build_methods(sources=sources, device=device, backends=args.backend, keys=keys)
    except ValueError as exc:  # unreadable data or checkpoint: say which, without a traceback
        raise SystemExit(f"error: {exc}") from exc
    for note in notes:
        print(f"note: {note}", flush=True)
    noisy = NoisyInput(device=device)
    tables = [Table("Grayscale")]
    gray_methods = {NOISY_INPUT: noisy, **{d.name: d for k in GRAY_METHODS for d in built.get(k, [])}}
    run_table(tables[0], gray_methods, gray_settings(), images_u8, batch_size=args.batch_size, seed=args.seed,
              device=device)
    if not args.no_color:
        color_methods = {NOISY_INPUT: noisy, **{d.name: d for k in COLOR_METHODS for d in built.get(k, [])}}
        for title, per_channel, offset in (("Colour", False, 100), ("Colour, per-channel noise", True, 200)):
            tables.append(Table(title))
            run_table(tables[-1], color_methods, color_settings(per_channel=per_channel), images_u8,
                      batch_size=args.batch_size, seed=args.seed + offset, device=device)

    meta = {"data": str(args.data), "images": len(images_u8),
            "image_size": f"{images_u8.shape[-1]}×{images_u8.shape[-2]}", "device": str(device),
            "device_name": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "batch_size": args.batch_size, "seed": args.seed,
            "backends": {d.name: d.backend for k in built for d in built[k] if METHODS[k].learned},
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": time.perf_counter() - started}
    results = {"meta": meta, "notes": notes,
               "tables": {t.title.lower(): [asdict(r) for r in t.rows] for t in tables},
               "speed": {t.title.lower(): {m: statistics.median(r) for m, r in t.batch_rates.items() if r}
                         for t in tables}}
    markdown = report_markdown(tables, meta, notes)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    write_atomic(args.out / "results.md", markdown)
    print(markdown)
    return results


if __name__ == "__main__":
    main()
