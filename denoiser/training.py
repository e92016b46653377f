"""Training loop for any denoiser in `denoiser.models`, on one CPU, one GPU or many DDP processes.

The article (Paperspace, "Denoising Autoencoders") trains for 15 epochs with Adam at 1e-3, batch 64 and
MSE, on noise drawn once before training. This loop does the same job, and by default better: batches
stay uint8 until they reach the device, noise is drawn there, fresh for every batch, from a seeded
per-rank generator (the article's frozen noise is `frozen_noise=True`).

Run under `torchrun --nproc_per_node=N train.py ...` and each process takes its own shard of every epoch
and its own noise seed; gradients are averaged by DistributedDataParallel (gloo on CPU, nccl on GPU).
Only rank 0 logs and writes files. Per epoch it writes the weights as a safetensors checkpoint, the
pictures and plots of `denoiser.reports`, and `resume.pt` (optimizer, progress, RNG states). A resume
point is also written every `save_minutes` of wall time (and every `save_every` steps when set), so a
killed run loses minutes at most. The run's settings are kept in `train_config.json`, so the run folder
alone is enough to continue it (`read_run_config`), and a run stopped before its first resume point
starts over with them.

With `photos` set, a share of the steps (`photo_share`) trains on random crops of photos instead of
CIFAR-10 images (`denoiser.crops`, the held-out validation photos excluded), and `degradation` applies what
real noisy files go through after the noise (`denoiser.degrade`: near-extreme impulses, resizing, JPEG). A
model that returns (replacement values, detection logits) in train mode (`denoiser.models.impulse`) is
trained in two parts: the image loss of its values placed on the pixels the degradation really changed
(and on those its detector flags), and binary cross-entropy of its detector against the changed pixels,
weighted by `detect_weight`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from denoiser import reports
from denoiser.architectures import build_model
from denoiser.checkpoint import atomic_torch_save, copy_checkpoint, load_model, read_config, save_checkpoint
from denoiser.crops import PhotoCrops
from denoiser.data import ImageSet, Preprocess, load_split, one_per_class, prepare_batch
from denoiser.degrade import Degradation
from denoiser.interface import select_device
from denoiser.metrics import psnr, ssim
from denoiser.models import DenoisingModel, UNetDenoiser
from denoiser.models.impulse import compose_with_mask, detection_target
from denoiser.noise import NoiseRecipe
from denoiser.photos import load_photos, photo_names, training_names

VAL_NOISE_SEED = 1234  # the same validation noise every epoch, so epochs compare
VAL_SAMPLE_SEED = 0  # a --val-limit sample does not follow --seed, so runs with different seeds compare
CURVE_POINTS_PER_EPOCH = 20  # training-loss points per epoch in loss.png
BAR_REFRESH_S = 1.0  # the bar's loss costs a device sync, so it is refreshed at most this often
TIME_CHECK_STEPS = 16  # under DDP the ranks agree on a time-based resume point every this many steps


@dataclass
class TrainConfig:
    recipe: str = ""  # the train.py recipe these settings started from ("" when built in code)
    architecture: str = "unet"  # "unet" (the default model) or "article"
    model_config: dict = field(default_factory=dict)  # overrides of the architecture's config dataclass
    data: str = "cifar10"  # see denoiser.data.load_split
    out: str = "runs/default"  # run folder: checkpoint/, resume.pt, grids, plots, history.json
    publish: str | None = None  # copy the final checkpoint here (e.g. checkpoints/default) when done
    publish_skipped: str = ""  # why the run is not published (said at the end), e.g. "--train-limit was set"
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
    train_limit: int | None = None  # a seeded sample of N training images across classes (quick runs, tests)
    val_limit: int | None = None  # the same for validation, drawn with VAL_SAMPLE_SEED
    seed: int = 0
    device: str | None = None  # None: CUDA when present, else CPU
    half: bool = False  # store the final weights in fp16
    save_minutes: float = 5.0  # wall time between mid-epoch resume points
    save_every: int | None = None  # also a resume point every N steps when set
    resume: bool = False  # continue from <out>/resume.pt; without it an existing run is never overwritten
    photos: str | None = None  # a zip or folder of training photos (denoiser.photos); None: CIFAR-10 only
    photo_share: float = 0.5  # share of steps that train on photo crops instead of CIFAR-10 images
    photo_crop: int = 64  # side of the square photo crops
    photo_batch: int = 16  # crops per photo step: 16 of 64x64 hold as many pixels as 64 CIFAR images
    structure_share: float = 0.3  # share of photo crops with synthetic lines, borders, text... drawn in
    page_share: float = 0.0  # share of those drawn on a flat page of one colour instead (documents, screenshots)
    degradation: Degradation = field(  # what happens after the noise; all off unless a recipe asks
        default_factory=lambda: Degradation(near_extreme_share=0.0, resize_share=0.0, jpeg_share=0.0))
    detect_weight: float = 1.0  # weight of the detection loss, for models that return detection logits
    # Weight of the image loss of the output made with the detector's own soft mask (sigmoid of its logits),
    # the one term that tells the detector what a miss costs: binary cross-entropy counts a missed impulse
    # the same as a false alarm, while a missed impulse leaves an error of up to 1 and a false alarm
    # repaints a pixel with about its own value.
    soft_mask_weight: float = 0.0
    init_from: str | None = None  # a checkpoint folder whose tensors of matching name and shape start the model
    # (its config too, under model_config, when it is of the same architecture)
    # Copy from init_from the tensors the architecture otherwise starts fresh (`fresh_on_init`) too: to go on
    # training a refiner on the pair it learned from, rather than one built for a replaced pair.
    init_all: bool = False
    card_title: str = "Salt-and-pepper denoiser"
    command: str = ""  # the command line, recorded in the model card


NESTED = {"noise": NoiseRecipe, "val_noise": NoiseRecipe, "preprocess": Preprocess, "val_preprocess": Preprocess,
          "degradation": Degradation}
# A run folder is known by where it is, so "out" may differ from the saved one (a moved folder).
RESUME_MAY_CHANGE = ("out", "epochs", "resume", "device", "publish", "publish_skipped", "command", "save_every",
                     "save_minutes", "half")


def config_from_dict(values: dict, *, source: str) -> TrainConfig:
    """The inverse of `asdict(TrainConfig)`; settings missing from older files take their defaults."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown settings {', '.join(unknown)} (written by another version of train.py?)")
    try:
        return TrainConfig(**{k: NESTED[k](**v) if k in NESTED else v for k, v in values.items()})
    except TypeError as exc:
        raise ValueError(f"{source}: {exc}") from None


def read_run_config(out: str | Path) -> TrainConfig:
    """The settings a run folder was started with (its train_config.json)."""
    path = Path(out) / "train_config.json"
    if not path.is_file():
        raise ValueError(f"{out} holds no run to resume: there is no {path}")
    try:
        values = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    return config_from_dict(values, source=str(path))


def settings_that_differ(a: TrainConfig, b: TrainConfig) -> list[str]:
    """Names of the settings that must match for b to continue a's run, and do not."""
    left, right = json.loads(json.dumps(asdict(a))), json.loads(json.dumps(asdict(b)))  # tuples -> lists
    return sorted(k for k in left if k not in RESUME_MAY_CHANGE and left[k] != right[k])


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings the loop cannot run, before anything is written."""
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    if cfg.shuffle not in ("epoch", "once", "none"):
        raise ValueError(f"shuffle must be 'epoch', 'once' or 'none', got {cfg.shuffle!r}")
    positive = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "train_limit": cfg.train_limit,
                "val_limit": cfg.val_limit, "save_every": cfg.save_every}
    for name, value in positive.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if not cfg.save_minutes > 0:
        raise ValueError(f"save_minutes must be above 0, got {cfg.save_minutes}")
    if not 0.0 <= cfg.photo_share <= 1.0 or cfg.detect_weight < 0:
        raise ValueError("photo_share must be in [0, 1] and detect_weight at least 0")
    if cfg.photos is not None and (cfg.photo_crop < 8 or cfg.photo_batch < 1):
        raise ValueError("photo_crop must be at least 8 and photo_batch at least 1")


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
    # Under torchrun (which sets TORCHELASTIC_RUN_ID) even one process joins a group, so a one-GPU torchrun
    # exercises nccl and DDP exactly as many GPUs would.
    if (world > 1 or "TORCHELASTIC_RUN_ID" in os.environ) and not dist.is_initialized():
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
    curve: list[list[float]] = field(default_factory=list)  # [position in epochs, rank 0's mean loss] for loss.png


@dataclass
class Parts:
    """What a resume point saves and restores."""

    model: DenoisingModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    noise_gen: torch.Generator


def _gather(rt: Runtime, obj: object) -> list:
    if rt.world == 1:
        return [obj]
    out: list = [None] * rt.world
    dist.all_gather_object(out, obj)
    return out


def save_resume(rt: Runtime, path: Path, *, parts: Parts, progress: Progress) -> None:
    """Every rank contributes its noise generator state; rank 0 writes one file."""
    gen_states = _gather(rt, parts.noise_gen.get_state().cpu())
    if rt.main:
        atomic_torch_save({
            "model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(), "progress": asdict(progress), "noise_generators": gen_states,
            "world": rt.world, "torch_rng": torch.get_rng_state(),
        }, path)


def load_resume(rt: Runtime, path: Path, *, parts: Parts) -> Progress:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["world"] != rt.world:
        raise ValueError(f"{path} was written by {state['world']} processes; resume with the same number")
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    parts.noise_gen.set_state(state["noise_generators"][rt.rank])
    torch.set_rng_state(state["torch_rng"])
    return Progress(**state["progress"])


def prepare_run_folder(cfg: TrainConfig, rt: Runtime) -> bool:
    """Refuse to overwrite a run by accident or to resume one with other settings; record the settings.
    Returns whether there is a resume point to continue from."""
    out = Path(cfg.out)
    has_resume_point = (out / "resume.pt").exists()
    if cfg.resume:
        changed = settings_that_differ(read_run_config(out), cfg)
        if changed:
            raise ValueError(f"--resume with settings that differ from the run in {out}: {', '.join(changed)}")
        if not has_resume_point:
            log(rt, f"{out} has no resume point yet (the run stopped before its first one): "
                    "starting that run over with its saved settings")
    elif has_resume_point:
        raise ValueError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if rt.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    if rt.world > 1:
        dist.barrier()
    return cfg.resume and has_resume_point


class ResumeTimer:
    """When a mid-epoch resume point is due: every `save_every` steps, and once `save_minutes` have passed
    since the last one. Under DDP every rank must save together, so rank 0's clock decides."""

    def __init__(self, cfg: TrainConfig, rt: Runtime) -> None:
        self.every, self.seconds, self.rt = cfg.save_every, cfg.save_minutes * 60, rt
        self.reset()

    def reset(self) -> None:
        self.last = time.monotonic()

    def due(self, step: int) -> bool:
        if self.every and step % self.every == 0:
            return True
        if self.rt.world == 1:
            return time.monotonic() - self.last >= self.seconds
        if step % TIME_CHECK_STEPS:
            return False
        flag = torch.tensor([int(time.monotonic() - self.last >= self.seconds)], device=self.rt.device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())


# ----------------------------------------------------------------------------- data


def epoch_batches(n: int, *, cfg: TrainConfig, epoch: int, rt: Runtime) -> list[torch.Tensor]:
    """This rank's index batches for one epoch: one permutation for all ranks, dealt out rank by rank."""
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


def training_loss(output: torch.Tensor | tuple[torch.Tensor, torch.Tensor], noisy: torch.Tensor,
                  clean: torch.Tensor, *, cfg: TrainConfig) -> torch.Tensor:
    """The image loss of the model's output; for a detecting model, (values, logits), the image loss of its
    values on the truly corrupted pixels plus the detection loss."""
    if not isinstance(output, tuple):
        return image_loss(output.float(), clean, kind=cfg.loss)
    values, logits = output
    target = detection_target(noisy, clean)
    detect = F.binary_cross_entropy_with_logits(logits.float(), target)
    # Values are trained wherever they will be used: on the corrupted pixels, and on the pixels the detector
    # flags by mistake, so a false alarm repaints a clean pixel with about its own value.
    used = torch.maximum(target, (logits.detach() > 0).to(target.dtype))
    loss = image_loss(compose_with_mask(noisy, values.float(), used), clean, kind=cfg.loss) + cfg.detect_weight * detect
    if cfg.soft_mask_weight > 0:
        # The values are detached so that this term trains the detector alone.
        soft = compose_with_mask(noisy, values.detach().float(), torch.sigmoid(logits.float()))
        loss = loss + cfg.soft_mask_weight * image_loss(soft, clean, kind=cfg.loss)
    return loss


def photo_crops(cfg: TrainConfig, rt: Runtime) -> PhotoCrops | None:
    """The training photos' crop sampler, without the held-out validation photos; None without photos."""
    if cfg.photos is None:
        return None
    names = training_names(photo_names(cfg.photos))
    crops = PhotoCrops(list(load_photos(names, cfg.photos).values()), size=cfg.photo_crop,
                       structure_share=cfg.structure_share, page_share=cfg.page_share)
    log(rt, f"photos: {len(crops)} training photos from {cfg.photos}, {cfg.photo_batch} crops of "
            f"{cfg.photo_crop}x{cfg.photo_crop} on {cfg.photo_share:.0%} of steps")
    return crops


def step_images(cfg: TrainConfig, rt: Runtime, *, idx: torch.Tensor, train_images: torch.Tensor,
                crops: PhotoCrops | None, epoch: int, step: int) -> torch.Tensor:
    """This step's uint8 batch: CIFAR-10 images, or photo crops on a seeded share of steps (resumable)."""
    if crops is None:
        return train_images[idx]
    rng = np.random.default_rng([cfg.seed, epoch, step, rt.rank])  # the same choice after a resume
    return crops.batch(cfg.photo_batch, rng=rng) if rng.random() < cfg.photo_share else train_images[idx]


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


@torch.inference_mode()
def save_visual(model: torch.nn.Module, clean: torch.Tensor, noisy: torch.Tensor, path: Path, *,
                classes: list[str], rt: Runtime) -> None:
    """The article's per-epoch picture of the model's work on one test image per class."""
    model.eval()
    denoised = model(noisy.to(rt.device)).float().clamp(0, 1).cpu()
    model.train()
    reports.save_epoch_grid(path, noisy=noisy, denoised=denoised, clean=clean, classes=classes)


# ----------------------------------------------------------------------------- the loop


class EpochLoss:
    """The epoch's running training loss, summed on the device: the bar shows its mean at most every
    BAR_REFRESH_S seconds and loss.png gets a point every `curve_every` steps, so neither costs a device
    sync per step."""

    def __init__(self, rt: Runtime, *, bar: tqdm, curve: list[list[float]], curve_every: int, steps: int,
                 epoch: int) -> None:
        self.rt, self.bar, self.curve, self.curve_every, self.steps, self.epoch = rt, bar, curve, curve_every, steps, epoch
        self.sum, self.seen = torch.zeros((), device=rt.device), 0
        self.window, self.window_seen = torch.zeros((), device=rt.device), 0
        self.shown = -math.inf

    def add(self, loss: torch.Tensor, n: int, *, step: int) -> None:
        self.sum += loss.detach() * n
        self.window += loss.detach() * n
        self.seen, self.window_seen = self.seen + n, self.window_seen + n
        if not self.rt.main:
            return
        now = time.monotonic()
        if now - self.shown >= BAR_REFRESH_S:
            self.bar.set_postfix(loss=f"{self.sum.item() / self.seen:.5f}")
            self.shown = now
        if (step + 1) % self.curve_every == 0 or step + 1 == self.steps:
            self.curve.append([self.epoch + (step + 1) / self.steps, self.window.item() / self.window_seen])
            self.window.zero_()
            self.window_seen = 0

    def totals(self) -> tuple[float, int]:
        """The epoch's mean loss and images seen, over all ranks."""
        total, seen = self.sum, self.seen
        if self.rt.world > 1:
            stats = torch.stack([total, torch.tensor(float(seen), device=self.rt.device)])
            dist.all_reduce(stats)
            total, seen = stats[0], int(stats[1].item())
        return total.item() / max(seen, 1), seen


def train_epoch(cfg: TrainConfig, rt: Runtime, *, net: torch.nn.Module, parts: Parts, progress: Progress,
                train_images: torch.Tensor, crops: PhotoCrops | None, frozen: torch.Tensor | None,
                timer: ResumeTimer, resume_path: Path) -> tuple[float, int, float]:
    """Train from progress.step to the end of progress.epoch; returns (mean loss, images seen, seconds)."""
    epoch, start_step = progress.epoch, progress.step
    batches = epoch_batches(len(train_images), cfg=cfg, epoch=epoch, rt=rt)
    t0 = time.perf_counter()
    bar = tqdm(range(start_step, len(batches)), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not rt.main,
               initial=start_step, total=len(batches), unit="step")
    meter = EpochLoss(rt, bar=bar, curve=progress.curve, steps=len(batches), epoch=epoch,
                      curve_every=max(1, len(batches) // CURVE_POINTS_PER_EPOCH))
    for step in bar:
        idx = batches[step]
        images = step_images(cfg, rt, idx=idx, train_images=train_images, crops=crops, epoch=epoch, step=step)
        clean = prepare_batch(images.to(rt.device, non_blocking=True), cfg.preprocess, generator=parts.noise_gen)
        noisy = frozen[idx].to(rt.device) if frozen is not None else cfg.noise.apply(clean, generator=parts.noise_gen)
        noisy, clean = cfg.degradation.apply(noisy, clean, generator=parts.noise_gen)
        with torch.autocast(rt.device.type, dtype=rt.autocast_dtype, enabled=rt.autocast_dtype is not None):
            loss = training_loss(net(noisy), noisy, clean, cfg=cfg)
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parts.optimizer.step()
        parts.scheduler.step()
        meter.add(loss, len(images), step=step)
        progress.step = step + 1
        if progress.step < len(batches) and timer.due(progress.step):
            save_resume(rt, resume_path, parts=parts, progress=progress)
            timer.reset()
            log(rt, f"saved resume state: epoch {epoch + 1} step {progress.step}")
    bar.close()
    seconds = time.perf_counter() - t0
    return (*meter.totals(), seconds)


def write_epoch_outputs(cfg: TrainConfig, rt: Runtime, *, model: DenoisingModel, progress: Progress,
                        record: dict, show: tuple[torch.Tensor, torch.Tensor, list[str]]) -> None:
    """Rank 0's files after an epoch: picture, checkpoint (with its card after the last epoch), history, plots."""
    out, is_last = Path(cfg.out), record["epoch"] == cfg.epochs
    clean, noisy, classes = show
    save_visual(model, clean, noisy, out / f"epoch_{record['epoch']:03d}.png", classes=classes, rt=rt)
    card = reports.model_card(cfg, model=model, history=progress.history, final=record) if is_last else None
    save_checkpoint(model, out / "checkpoint", card=card, half=cfg.half and is_last)
    (out / "history.json").write_text(json.dumps(progress.history, indent=2) + "\n")
    reports.save_plots(out, history=progress.history, curve=progress.curve, loss=cfg.loss)


def init_weights(model: DenoisingModel, folder: str, *, everything: bool = False) -> tuple[int, list[str]]:
    """Copy into `model` every tensor of the checkpoint in `folder` whose name and shape match (fine-tuning, or
    a new architecture that shares a trunk with an old one), except those under the model's `fresh_on_init`
    unless `everything`; a colour U-Net takes a grayscale one's tensors through
    `UNetDenoiser.colour_tensors_from_gray`. Every frozen parameter must be copied. Returns (tensors copied,
    names left as built)."""
    source_model = load_model(folder)
    source = source_model.state_dict()
    own = model.state_dict()
    if isinstance(model, UNetDenoiser) and isinstance(source_model, UNetDenoiser) and \
            source_model.config.in_channels == 1 < model.config.in_channels:
        source = model.colour_tensors_from_gray(source)  # a colour U-Net started from the grayscale one
    matching = {k: v for k, v in source.items()
                if k in own and own[k].shape == v.shape and (everything or not k.startswith(model.fresh_on_init))}
    if not matching:
        raise ValueError(f"--init-from {folder}: no tensor matches this model's names and shapes")
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad and name not in matching]
    if frozen:  # a frozen part left as built would stay random for the whole run
        raise ValueError(f"--init-from {folder}: the model's frozen parts must come from it, but "
                         f"{len(frozen)} tensors do not match ({', '.join(frozen[:3])}...)")
    model.load_state_dict(matching, strict=False)
    return len(matching), sorted(set(own) - set(matching))


def model_settings(cfg: TrainConfig) -> dict:
    """The model's config fields: those of the `init_from` checkpoint when it is of the same architecture, under
    the run's own `model_config`, so a fine-tune rebuilds the network it starts from."""
    start = read_config(Path(cfg.init_from)) if cfg.init_from else {}
    return {**(start["config"] if start.get("architecture") == cfg.architecture else {}), **cfg.model_config}


def build_parts(cfg: TrainConfig, rt: Runtime, *, steps_per_epoch: int) -> Parts:
    # channels_last: oneDNN's faster convolution layout (1.16x training throughput on this project's CPU).
    model = build_model(cfg.architecture, model_settings(cfg))
    if cfg.init_from:
        loaded, skipped = init_weights(model, cfg.init_from, everything=cfg.init_all)
        log(rt, f"initialized {loaded} tensors from {cfg.init_from}"
                + (f"; {len(skipped)} kept their fresh values ({', '.join(skipped[:4])}{'...' if len(skipped) > 4 else ''})"
                   if skipped else ""))
    model = model.to(rt.device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    total_steps = cfg.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, (lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
        if cfg.schedule == "cosine" else (lambda s: 1.0))
    noise_gen = _generator(rt.device, cfg.seed * 7919 + rt.rank)  # a distinct noise stream per rank
    return Parts(model, optimizer, scheduler, noise_gen)


def finish(cfg: TrainConfig, rt: Runtime) -> None:
    """Publish the checkpoint, or say where it is and why it was not published."""
    checkpoint = Path(cfg.out) / "checkpoint"
    if cfg.publish:
        copy_checkpoint(checkpoint, cfg.publish)
        log(rt, f"published {checkpoint} -> {cfg.publish}")
    else:
        log(rt, f"checkpoint written to {checkpoint} (not published: {cfg.publish_skipped or 'no publish folder'};"
                " pass --publish DIR to publish)")


def train(cfg: TrainConfig) -> dict[str, float]:
    """Run (or resume) training as configured; returns the final validation figures."""
    check_config(cfg)
    rt = setup_runtime(cfg.device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    resume_path = out / "resume.pt"
    resuming = prepare_run_folder(cfg, rt)

    train_set = load_split(cfg.data, split="train", limit=cfg.train_limit, seed=cfg.seed)
    val_set = load_split(cfg.data, split="test", limit=cfg.val_limit, seed=VAL_SAMPLE_SEED)
    val_clean, val_noisy = make_val_pairs(val_set, cfg)
    show = one_per_class(val_set.labels, num_classes=len(val_set.classes))
    shown = (val_clean[show], val_noisy[show], [val_set.classes[i] for i in val_set.labels[show].tolist()])
    frozen = make_frozen_noise(train_set, cfg) if cfg.frozen_noise else None
    train_images = train_set.images.pin_memory() if rt.device.type == "cuda" else train_set.images
    crops = photo_crops(cfg, rt)

    steps_per_epoch = len(epoch_batches(len(train_set), cfg=cfg, epoch=0, rt=rt))
    parts = build_parts(cfg, rt, steps_per_epoch=steps_per_epoch)
    net: torch.nn.Module = DistributedDataParallel(parts.model) if dist.is_initialized() else parts.model
    progress = Progress()
    if resuming:
        progress = load_resume(rt, resume_path, parts=parts)
        log(rt, f"resuming from {resume_path}: epoch {progress.epoch + 1}, step {progress.step}")
    trained = parts.model.parameter_count(trained_only=True)
    log(rt, f"model {cfg.architecture}: {parts.model.parameter_count():,} parameters"
            f"{f' ({trained:,} trained, the rest frozen)' if trained < parts.model.parameter_count() else ''}"
            f" | device {rt.device}"
            f"{' ' + str(rt.autocast_dtype) if rt.autocast_dtype else ' fp32'} | {rt.world} process(es) | "
            f"train {len(train_set):,} images, validation {len(val_set):,} images | {steps_per_epoch} steps/epoch")

    net.train()
    timer = ResumeTimer(cfg, rt)
    while progress.epoch < cfg.epochs:
        epoch = progress.epoch
        partial = progress.step > 0
        t0 = time.perf_counter()
        train_loss, seen, train_seconds = train_epoch(cfg, rt, net=net, parts=parts, progress=progress,
                                                      train_images=train_images, crops=crops, frozen=frozen,
                                                      timer=timer, resume_path=resume_path)
        figures = evaluate(parts.model, val_clean, val_noisy, rt=rt, loss=cfg.loss, with_ssim=epoch + 1 == cfg.epochs)
        record = {"epoch": epoch + 1, "train_loss": train_loss, **figures, "images_per_s": seen / train_seconds,
                  "seconds": time.perf_counter() - t0, "train_images": len(train_set), "val_images": len(val_set),
                  "device": str(rt.device), "world": rt.world, "partial_epoch": partial}
        progress.history.append(record)
        progress.epoch, progress.step = epoch + 1, 0
        log(rt, f"epoch {epoch + 1}/{cfg.epochs} | train loss {record['train_loss']:.5f} | val loss "
                f"{record['val_loss']:.5f} | val PSNR {record['val_psnr']:.2f} dB | "
                f"{record['images_per_s']:.0f} images/s | {record['seconds']:.0f} s")
        if rt.main:
            write_epoch_outputs(cfg, rt, model=parts.model, progress=progress, record=record, show=shown)
        save_resume(rt, resume_path, parts=parts, progress=progress)
        timer.reset()

    final = progress.history[-1] if progress.history else {}
    if rt.main and final:
        finish(cfg, rt)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return final
