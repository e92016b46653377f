"""Training loop for any denoiser in `denoiser.models`, on one CPU, one GPU or many DDP processes.

The article (Paperspace, "Denoising Autoencoders") trains for 15 epochs with Adam at 1e-3, batch 64 and
MSE, on noise drawn once before training. This loop does the same job, and by default better: batches
stay uint8 until they reach the device, noise is drawn there, fresh for every batch, from a seeded
per-rank generator (the article's frozen noise is `frozen_noise=True`).

Run under `torchrun --nproc_per_node=N train.py ...` and each process takes its own shard of every epoch
and its own noise seed; gradients are averaged by DistributedDataParallel (gloo on CPU, nccl on GPU).
Only rank 0 logs and writes files. Per epoch it writes the article's visual (noisy, denoised and clean
rows, one test image per class), the weights as a safetensors checkpoint, and `resume.pt` (optimizer,
progress, RNG states). A resume state is also written every `save_every` steps, so `--resume` continues
a killed run from the last such step, mid-epoch included.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from huggingface_hub import ModelCard

from denoiser.architectures import build_model
from denoiser.checkpoint import atomic_torch_save, copy_checkpoint, save_checkpoint
from denoiser.interface import select_device
from denoiser.data import ImageSet, Preprocess, load_split, one_per_class, prepare_batch
from denoiser.metrics import psnr, ssim
from denoiser.models import DenoisingModel
from denoiser.noise import NoiseRecipe

VAL_NOISE_SEED = 1234  # the same validation noise every epoch, so epochs compare


@dataclass
class TrainConfig:
    architecture: str = "unet"  # "unet" (the default model) or "article"
    model_config: dict = field(default_factory=dict)  # overrides of the architecture's config dataclass
    data: str = "cifar10"  # see denoiser.data.load_split
    out: str = "runs/default"  # run folder: checkpoint/, resume.pt, grids, plots, history.json
    publish: str | None = None  # copy the final checkpoint here (e.g. checkpoints/default) when done
    epochs: int = 15
    batch_size: int = 64  # per process
    lr: float = 1e-3
    schedule: str = "constant"  # "constant" (the article) or "cosine" (decay to 0 over the run)
    loss: str = "mse"  # "mse" (the article) or "psnr": see image_loss
    shuffle: str = "epoch"  # "epoch": a new order each epoch; "once": one seeded order for every epoch, which is
    # what the article gets from CIFAR-10's pre-mixed file order with an unshuffled DataLoader (folders and zips
    # list images class by class, so "none" would feed whole batches of one class); "none": file order
    frozen_noise: bool = False  # the article draws the training noise once, before training
    noise: NoiseRecipe = field(default_factory=NoiseRecipe)
    val_noise: NoiseRecipe = field(default_factory=lambda: NoiseRecipe(amount_min=0.3, amount_max=0.3))
    preprocess: Preprocess = field(default_factory=Preprocess)
    val_preprocess: Preprocess = field(default_factory=Preprocess)
    train_limit: int | None = None  # use the first N training images (quick runs, tests)
    val_limit: int | None = None
    seed: int = 0
    device: str | None = None  # None: CUDA when present, else CPU
    half: bool = False  # store the published weights in fp16
    save_every: int = 200  # steps between mid-epoch resume states
    resume: bool = False  # continue from <out>/resume.pt; without it an existing run is never overwritten
    card_title: str = "Salt-and-pepper denoiser"
    command: str = ""  # the command line, recorded in the model card


# ----------------------------------------------------------------------------- setup


@dataclass
class Runtime:
    device: torch.device
    rank: int
    world: int
    autocast_dtype: torch.dtype | None  # bf16 on GPUs that support it; CPU stays fp32

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_runtime(requested: str | None) -> Runtime:
    """Decide device, precision and the process group once, from the environment torchrun sets."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = select_device(requested).type == "cuda"
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    bf16 = use_cuda and torch.cuda.is_bf16_supported()
    return Runtime(device, rank, world, torch.bfloat16 if bf16 else None)


def log(rt: Runtime, message: str) -> None:
    if rt.main:
        tqdm.write(message)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


# ----------------------------------------------------------------------------- state


@dataclass
class Progress:
    epoch: int = 0  # the epoch in progress (0-based)
    step: int = 0  # steps of that epoch already done
    history: list[dict] = field(default_factory=list)  # one dict per finished epoch


def _gather(rt: Runtime, obj: object) -> list:
    if rt.world == 1:
        return [obj]
    out: list = [None] * rt.world
    dist.all_gather_object(out, obj)
    return out


def save_resume(rt: Runtime, path: Path, *, model: DenoisingModel, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, progress: Progress,
                noise_gen: torch.Generator) -> None:
    """Every rank contributes its noise generator state; rank 0 writes one file."""
    gen_states = _gather(rt, noise_gen.get_state().cpu())
    if rt.main:
        atomic_torch_save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "progress": asdict(progress), "noise_generators": gen_states, "world": rt.world,
            "torch_rng": torch.get_rng_state(),
        }, path)


def load_resume(rt: Runtime, path: Path, *, model: DenoisingModel, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, noise_gen: torch.Generator) -> Progress:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["world"] != rt.world:
        raise ValueError(f"{path} was written by {state['world']} processes; resume with the same number")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    noise_gen.set_state(state["noise_generators"][rt.rank])
    torch.set_rng_state(state["torch_rng"])
    return Progress(**state["progress"])


RESUME_MAY_CHANGE = ("epochs", "resume", "device", "publish", "command", "save_every", "half")


def check_run_folder(cfg: TrainConfig, rt: Runtime) -> None:
    """Refuse to overwrite a run by accident, and to resume one with different settings."""
    out = Path(cfg.out)
    saved = out / "train_config.json"
    mine = {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k not in RESUME_MAY_CHANGE}
    if cfg.resume:
        if not (out / "resume.pt").exists():
            raise ValueError(f"--resume: there is no {out / 'resume.pt'} to resume from")
        if saved.exists():
            theirs = {k: v for k, v in json.loads(saved.read_text()).items() if k not in RESUME_MAY_CHANGE}
            changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if changed:
                raise ValueError(f"--resume with settings that differ from the run in {out}: {', '.join(changed)}")
    elif (out / "resume.pt").exists():
        raise ValueError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if rt.main:
        out.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    if rt.world > 1:
        dist.barrier()


# ----------------------------------------------------------------------------- data


def epoch_batches(n: int, *, cfg: TrainConfig, epoch: int, rt: Runtime) -> list[torch.Tensor]:
    """This rank's index batches for one epoch: one permutation for all ranks, dealt out rank by rank."""
    if cfg.shuffle not in ("epoch", "once", "none"):
        raise ValueError(f"shuffle must be 'epoch', 'once' or 'none', got {cfg.shuffle!r}")
    seed = cfg.seed + (epoch if cfg.shuffle == "epoch" else 0)
    order = torch.arange(n) if cfg.shuffle == "none" else torch.randperm(n, generator=_generator(torch.device("cpu"), seed))
    usable = n - n % rt.world  # every rank gets the same number of steps, or DDP would hang
    shard = order[:usable][rt.rank::rt.world]
    return list(shard.split(cfg.batch_size))


def make_val_pairs(val: ImageSet, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean and noisy validation images, drawn once with a fixed seed (kept on the CPU)."""
    clean = prepare_batch(val.images, cfg.val_preprocess)
    noisy = cfg.val_noise.apply(clean, generator=_generator(torch.device("cpu"), VAL_NOISE_SEED))
    return clean, noisy


def make_frozen_noise(train: ImageSet, cfg: TrainConfig) -> torch.Tensor:
    """The article's noise: one draw per training image, before training, reused every epoch."""
    clean = prepare_batch(train.images, cfg.preprocess)
    return cfg.noise.apply(clean, generator=_generator(torch.device("cpu"), cfg.seed))


# ----------------------------------------------------------------------------- loss


LOSSES = ("mse", "psnr")
PSNR_LOSS_FLOOR = 1e-5  # per-image MSE floor of the "psnr" loss (50 dB): errors below it are invisible


def image_loss(output: torch.Tensor, target: torch.Tensor, *, kind: str) -> torch.Tensor:
    """The training loss. "mse": plain mean squared error, as in the article.

    "psnr": the mean over images of 10 log10(MSE), i.e. minus the mean PSNR the benchmark reports. With a
    blind model trained on amounts from 0 to 0.95, plain MSE is dominated by the heaviest noise (an image at
    amount 0.9 has over 100x the error of one at 0.1), so light noise, the common case, is barely trained. On
    the log scale a dB gained counts the same at every amount.
    """
    if kind == "mse":
        return F.mse_loss(output, target)
    per_image = (output - target).square().flatten(1).mean(1)  # (B, C, H, W) -> (B,)
    return 10 * torch.log10(per_image + PSNR_LOSS_FLOOR).mean()


# ----------------------------------------------------------------------------- evaluation


@torch.inference_mode()
def evaluate(model: torch.nn.Module, clean: torch.Tensor, noisy: torch.Tensor, *, rt: Runtime, loss: str,
             batch_size: int = 500, with_ssim: bool = False) -> dict[str, float]:
    """Mean loss (the training loss, so the two compare), PSNR (and SSIM) over the validation set."""
    model.eval()
    idx = torch.arange(len(clean))[rt.rank::rt.world]
    totals = torch.zeros(4, dtype=torch.float64, device=rt.device)  # loss, psnr, ssim sums; count
    for batch in tqdm(idx.split(batch_size), desc="validate", leave=False, disable=not rt.main):
        target, inputs = clean[batch].to(rt.device), noisy[batch].to(rt.device)
        with torch.autocast(rt.device.type, dtype=rt.autocast_dtype, enabled=rt.autocast_dtype is not None):
            out = model(inputs)
        out = out.float()
        totals[0] += image_loss(out, target, kind=loss) * len(batch)
        out = out.clamp(0, 1)
        totals[1] += psnr(out, target).sum()
        if with_ssim:
            totals[2] += ssim(out, target).sum()
        totals[3] += len(batch)
    if rt.world > 1:
        dist.all_reduce(totals)
    model.train()
    n = totals[3].item()
    result = {"val_loss": totals[0].item() / n, "val_psnr": totals[1].item() / n}
    if with_ssim:
        result["val_ssim"] = totals[2].item() / n
    return result


# ----------------------------------------------------------------------------- outputs


@torch.inference_mode()
def save_visual(model: torch.nn.Module, clean: torch.Tensor, noisy: torch.Tensor, path: Path, *,
                rt: Runtime) -> None:
    """The article's per-epoch picture: noisy, denoised and clean rows, one column per class."""
    from torchvision.utils import save_image

    model.eval()
    denoised = model(noisy.to(rt.device)).float().clamp(0, 1).cpu()
    model.train()
    rows = torch.cat([noisy, denoised, clean])  # (3*K, C, H, W): the grid fills row by row
    tmp = path.with_name(f".{path.name}")
    save_image(rows, tmp, nrow=len(clean), padding=1, format="png")
    os.replace(tmp, path)


def save_plots(history: list[dict], out: Path, *, loss: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    loss_unit = "MSE" if loss == "mse" else "-PSNR (dB)"
    for name, keys, ylabel in (("loss.png", ("train_loss", "val_loss"), loss_unit), ("psnr.png", ("val_psnr",), "dB")):
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
        for key in keys:
            ax.plot(epochs, [h[key] for h in history], marker="o", label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)


def model_card(cfg: TrainConfig, model: DenoisingModel, progress: Progress, final: dict[str, float]) -> str:
    last = progress.history[-1] if progress.history else {}
    lines = [
        "---", "library_name: denoiser", "license: mit", "tags:", "- image-denoising", "- salt-and-pepper", "---", "",
        f"# {cfg.card_title}", "",
        f"Architecture `{model.architecture}`, {model.parameter_count():,} parameters, "
        f"config `{json.dumps(asdict(model.config))}`.", "",
        "## Training", "",
        f"- Data: `{cfg.data}` ({last.get('train_images', '?')} training images), {cfg.epochs} epochs, "
        f"batch {cfg.batch_size} per process, Adam lr {cfg.lr} ({cfg.schedule}), {cfg.loss} loss.",
        f"- Noise: `{json.dumps(asdict(cfg.noise))}`, {'frozen once' if cfg.frozen_noise else 'fresh every batch'}.",
        f"- Preprocessing: `{json.dumps(asdict(cfg.preprocess))}`.",
        f"- Command: `{cfg.command or 'python train.py'}`",
        f"- Hardware: {last.get('device', '?')}, {sum(h['seconds'] for h in progress.history):.0f} s of training "
        f"and validation.", "",
        "## Validation at the end of training", "",
        f"Noise `{json.dumps(asdict(cfg.val_noise))}` on `{json.dumps(asdict(cfg.val_preprocess))}` images, "
        f"{last.get('val_images', '?')} images: PSNR {final['val_psnr']:.2f} dB, SSIM {final.get('val_ssim', float('nan')):.3f} "
        "(SSIM: torchmetrics, Gaussian 11x11 window, sigma 1.5).",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig) -> dict[str, float]:
    """Run (or resume) training as configured; returns the final validation figures."""
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    rt = setup_runtime(cfg.device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    resume_path = out / "resume.pt"
    check_run_folder(cfg, rt)

    train_set = load_split(cfg.data, split="train", limit=cfg.train_limit)
    val_set = load_split(cfg.data, split="test", limit=cfg.val_limit)
    val_clean, val_noisy = make_val_pairs(val_set, cfg)
    show = one_per_class(val_set.labels, num_classes=len(val_set.classes))
    frozen = make_frozen_noise(train_set, cfg) if cfg.frozen_noise else None
    train_images = train_set.images.pin_memory() if rt.device.type == "cuda" else train_set.images

    # channels_last: oneDNN's faster convolution layout (1.16x training throughput on this project's CPU).
    model = build_model(cfg.architecture, cfg.model_config).to(rt.device, memory_format=torch.channels_last)
    net: torch.nn.Module = DistributedDataParallel(model) if rt.world > 1 else model
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = len(epoch_batches(len(train_set), cfg=cfg, epoch=0, rt=rt))
    total_steps = cfg.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, (lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
        if cfg.schedule == "cosine" else (lambda s: 1.0))
    noise_gen = _generator(rt.device, cfg.seed * 7919 + rt.rank)  # a distinct noise stream per rank

    progress = Progress()
    if cfg.resume:
        progress = load_resume(rt, resume_path, model=model, optimizer=optimizer, scheduler=scheduler,
                               noise_gen=noise_gen)
        log(rt, f"resuming from {resume_path}: epoch {progress.epoch + 1}, step {progress.step}")
    log(rt, f"model {cfg.architecture}: {model.parameter_count():,} parameters | device {rt.device}"
            f"{' ' + str(rt.autocast_dtype) if rt.autocast_dtype else ' fp32'} | {rt.world} process(es) | "
            f"train {len(train_set):,} images, validation {len(val_set):,} images | {steps_per_epoch} steps/epoch")

    net.train()
    while progress.epoch < cfg.epochs:
        epoch, start_step = progress.epoch, progress.step
        batches = epoch_batches(len(train_set), cfg=cfg, epoch=epoch, rt=rt)
        loss_sum, seen, t0 = torch.zeros((), device=rt.device), 0, time.perf_counter()
        bar = tqdm(range(start_step, len(batches)), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not rt.main,
                   initial=start_step, total=len(batches), unit="step")
        for step in bar:
            idx = batches[step]
            clean = prepare_batch(train_images[idx].to(rt.device, non_blocking=True), cfg.preprocess,
                                  generator=noise_gen)
            noisy = frozen[idx].to(rt.device) if frozen is not None else cfg.noise.apply(clean, generator=noise_gen)
            with torch.autocast(rt.device.type, dtype=rt.autocast_dtype, enabled=rt.autocast_dtype is not None):
                loss = image_loss(net(noisy).float(), clean, kind=cfg.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(idx)
            seen += len(idx)
            if rt.main and step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.5f}")
            progress.step = step + 1
            if progress.step % cfg.save_every == 0 and progress.step < len(batches):
                save_resume(rt, resume_path, model=model, optimizer=optimizer, scheduler=scheduler,
                            progress=progress, noise_gen=noise_gen)
                log(rt, f"saved resume state: epoch {epoch + 1} step {progress.step}")
        bar.close()
        train_seconds = time.perf_counter() - t0
        if rt.world > 1:
            stats = torch.stack([loss_sum, torch.tensor(float(seen), device=rt.device)])
            dist.all_reduce(stats)
            loss_sum, seen = stats[0], int(stats[1].item())
        is_last = epoch + 1 == cfg.epochs
        figures = evaluate(model, val_clean, val_noisy, rt=rt, loss=cfg.loss, with_ssim=is_last)
        record = {"epoch": epoch + 1, "train_loss": loss_sum.item() / max(seen, 1), **figures,
                  "images_per_s": seen / train_seconds, "seconds": time.perf_counter() - t0,
                  "train_images": len(train_set), "val_images": len(val_set), "device": str(rt.device),
                  "world": rt.world, "partial_epoch": start_step > 0}
        progress.history.append(record)
        progress.epoch, progress.step = epoch + 1, 0
        log(rt, f"epoch {epoch + 1}/{cfg.epochs} | train loss {record['train_loss']:.5f} | val loss "
                f"{record['val_loss']:.5f} | val PSNR {record['val_psnr']:.2f} dB | "
                f"{record['images_per_s']:.0f} images/s | {record['seconds']:.0f} s")
        if rt.main:
            out.mkdir(parents=True, exist_ok=True)
            save_visual(model, val_clean[show], val_noisy[show], out / f"epoch_{epoch + 1:03d}.png", rt=rt)
            card = model_card(cfg, model, progress, record) if is_last else ""
            save_checkpoint(model, out / "checkpoint", card=ModelCard(card) if card else None, half=cfg.half and is_last)
            (out / "history.json").write_text(json.dumps(progress.history, indent=2) + "\n")
            save_plots(progress.history, out, loss=cfg.loss)
        save_resume(rt, resume_path, model=model, optimizer=optimizer, scheduler=scheduler, progress=progress,
                    noise_gen=noise_gen)

    final = progress.history[-1] if progress.history else {}
    if rt.main and cfg.publish and final:
        copy_checkpoint(out / "checkpoint", cfg.publish)
        log(rt, f"published {out / 'checkpoint'} -> {cfg.publish}")
    if rt.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return final
