"""Train a salt-and-pepper denoiser: `python train.py` refreshes checkpoints/default.

Recipes set every default; any flag overrides them:
  default       the switching U-Net, blind to the noise amount (0 to 0.95), grayscale and per-channel colour
  impulse       the impulse U-Net (learned detector, colour in one pass) on CIFAR-10 and photos; published to
                checkpoints/impulse-detector, and paired with checkpoints/default as the filler in
                checkpoints/default/moved (the Impulse U-Net: the default model's network for noisy JPEGs)
  moved         the Impulse U-Net's refiner: a third stage after checkpoints/default/moved's detector and
                filler (both frozen) that removes what JPEG made of the impulses; published back to that folder
  impulse-gray  the same network for one channel (an experiment; it ships nowhere)
  article       the Paperspace article exactly: its autoencoder, 15 epochs, batch 64, Adam 1e-3, MSE, the
                article's noise rule at 0.2 drawn once, min-max normalized grayscale images, one fixed order

Examples:
  python train.py --data ../shared/data/cifar10-images.zip
  python train.py --recipe article --data ../shared/data/cifar10-images.zip
  torchrun --nproc_per_node=4 train.py --data /path/to/cifar10 --batch-size 32
  python train.py --data ../shared/data/cifar10-images.zip --epochs 2 --train-limit 2000 --out runs/quick
  python train.py --out runs/quick --resume            # continue a killed run with its saved settings

Publishing: a run publishes its checkpoint to checkpoints/<recipe> (where the app loads it) only when it
trains on the recipe's full data (no --train-limit or --val-limit) for at least the recipe's epochs, or
when given --publish DIR. Any other run says where its checkpoint is.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from denoiser.architectures import ARCHITECTURES
from denoiser.checkpoint import MOVED_FOLDER, copy_checkpoint, is_checkpoint, load_model, save_checkpoint
from denoiser.data import Preprocess
from denoiser.degrade import Degradation
from denoiser.models import DetectFill
from denoiser.noise import NoiseRecipe
from denoiser.photos import PHOTOS_ZIP
from denoiser.reports import pair_card
from denoiser.training import LOSSES, RESUME_MAY_CHANGE, TrainConfig, read_run_config, settings_that_differ, train

ROOT = Path(__file__).resolve().parent

RECIPES = {
    "default": TrainConfig(
        recipe="default", architecture="unet", out="runs/default", publish=str(ROOT / "checkpoints" / "default"),
        epochs=40, batch_size=64, lr=2e-3, schedule="cosine", loss="psnr", shuffle="epoch", frozen_noise=False,
        # Amounts 0 to 0.95, with 30% of images drawn from 0.4-0.85 instead: heavy noise is where the model
        # has the least to spare, light noise is far ahead of every other method.
        noise=NoiseRecipe(rule="range", amount_min=0.0, amount_max=0.95, salt_share_min=0.3, salt_share_max=0.7,
                          focus_share=0.3, focus_min=0.4, focus_max=0.85),
        val_noise=NoiseRecipe(rule="range", amount_min=0.5, amount_max=0.5),
        preprocess=Preprocess(random_channel_prob=0.5, flip=True, normalize_prob=0.2),
        val_preprocess=Preprocess(), card_title="Default denoiser: switching U-Net autoencoder",
    ),
    # The default model's U-Net for colour in one pass (issue 9): three channels in, three out, so each channel
    # can use the others, at about a third of the network's cost of three grayscale passes. It starts from the
    # grayscale default's weights (`UNetDenoiser.colour_tensors_from_gray`) and trains on CIFAR-10 and photo
    # crops with per-pixel and per-channel noise. Published, it takes the default model's colour images
    # (`checkpoints/default/colour`); the 58-minute CPU run measured in the README (Training) was about twice
    # as fast but up to 1.7 dB worse on CIFAR-10 colour, so it was not published.
    "default-colour": TrainConfig(
        recipe="default-colour", architecture="unet", model_config={"in_channels": 3}, out="runs/default-colour",
        publish=str(ROOT / "checkpoints" / "default" / "colour"), init_from=str(ROOT / "checkpoints" / "default"),
        epochs=36, batch_size=64, lr=1e-3, schedule="cosine", loss="psnr", shuffle="epoch", frozen_noise=False,
        noise=NoiseRecipe(rule="range", amount_min=0.0, amount_max=0.95, salt_share_min=0.3, salt_share_max=0.7,
                          focus_share=0.3, focus_min=0.4, focus_max=0.85, per_channel_share=0.5),
        val_noise=NoiseRecipe(rule="range", amount_min=0.5, amount_max=0.5),
        preprocess=Preprocess(color=True, flip=True, normalize_prob=0.2), val_preprocess=Preprocess(color=True),
        photos=str(PHOTOS_ZIP) if PHOTOS_ZIP.is_file() else None,
        card_title="Default denoiser, colour in one pass: switching U-Net autoencoder",
    ),
    # Issue 9's model: the impulse U-Net, colour in one pass, with a learned detector, trained on CIFAR-10
    # and photo crops with synthetic structure, per-pixel and per-channel noise, and the degradations of real
    # files (near-extreme impulses, resizing, JPEG).
    "impulse": TrainConfig(
        recipe="impulse", architecture="impulse", out="runs/impulse",
        publish=str(ROOT / "checkpoints" / "impulse-detector"),
        epochs=30, batch_size=64, lr=2e-3, schedule="cosine", loss="psnr", shuffle="epoch", frozen_noise=False,
        noise=NoiseRecipe(rule="range", amount_min=0.0, amount_max=0.95, salt_share_min=0.3, salt_share_max=0.7,
                          focus_share=0.3, focus_min=0.4, focus_max=0.85, per_channel_share=0.5, clean_share=0.1),
        val_noise=NoiseRecipe(rule="range", amount_min=0.5, amount_max=0.5),
        preprocess=Preprocess(color=True, flip=True, normalize_prob=0.1, gray_prob=0.3),
        val_preprocess=Preprocess(color=True), photos=str(PHOTOS_ZIP) if PHOTOS_ZIP.is_file() else None,
        degradation=Degradation(), detect_weight=20.0, soft_mask_weight=1.0,
        card_title="Impulse U-Net: learned impulse detection, colour in one pass",
    ),
    # Issue 9's JPEG target: the Impulse U-Net (the default model's network for images whose impulses moved)
    # gets a refiner (`denoiser.models.detect_fill`), trained on top of the published pair with the pair frozen.
    # Its data is what that route receives: mostly photo crops, noisy and then mostly JPEG'd, some near-extreme
    # or resized, and a fifth left lossless so that the Impulse U-Net, also offered on its own, stays good there.
    # 12 epochs took 49 minutes on this project's 2-core CPU (README, Training).
    "moved": TrainConfig(
        recipe="moved", architecture="detect_fill", model_config={"refiner": {}}, out="runs/moved",
        publish=str(ROOT / "checkpoints" / "default" / MOVED_FOLDER),
        init_from=str(ROOT / "checkpoints" / "default" / MOVED_FOLDER),
        epochs=12, batch_size=64, lr=1e-3, schedule="cosine", loss="psnr", shuffle="epoch", frozen_noise=False,
        noise=NoiseRecipe(rule="range", amount_min=0.02, amount_max=0.6, salt_share_min=0.3, salt_share_max=0.7,
                          per_channel_share=0.5),
        val_noise=NoiseRecipe(rule="range", amount_min=0.5, amount_max=0.5),
        preprocess=Preprocess(color=True, flip=True, gray_prob=0.3), val_preprocess=Preprocess(color=True),
        photos=str(PHOTOS_ZIP) if PHOTOS_ZIP.is_file() else None, photo_share=0.8,
        # Scored against the clean original, the refiner also learns to undo the compression.
        degradation=Degradation(near_extreme_share=0.25, resize_share=0.1, jpeg_share=0.7, jpeg_target="original"),
        half=True,
        card_title="Impulse U-Net: learned impulse detection, the default model's fill, and a refiner for JPEG files",
    ),
    # The impulse U-Net for grayscale images: the same design and data, one channel, so a gray image would cost
    # a third of a colour pass. An experiment: its run on one H100 stayed 3.6 dB behind the default model on
    # grayscale CIFAR-10 at 0.5 (README, the impulse recipe), so nothing ships from it.
    "impulse-gray": TrainConfig(
        recipe="impulse-gray", architecture="impulse", model_config={"in_channels": 1}, out="runs/impulse-gray",
        publish=str(ROOT / "checkpoints" / "impulse-gray"), epochs=30, batch_size=64, lr=2e-3, schedule="cosine",
        loss="psnr", shuffle="epoch", frozen_noise=False,
        noise=NoiseRecipe(rule="range", amount_min=0.0, amount_max=0.95, salt_share_min=0.3, salt_share_max=0.7,
                          focus_share=0.3, focus_min=0.4, focus_max=0.85, clean_share=0.1),
        val_noise=NoiseRecipe(rule="range", amount_min=0.5, amount_max=0.5),
        preprocess=Preprocess(random_channel_prob=0.5, flip=True, normalize_prob=0.1), val_preprocess=Preprocess(),
        photos=str(PHOTOS_ZIP) if PHOTOS_ZIP.is_file() else None, degradation=Degradation(), detect_weight=20.0,
        soft_mask_weight=1.0, card_title="Impulse U-Net (grayscale): learned impulse detection",
    ),
    "article": TrainConfig(
        recipe="article", architecture="article", out="runs/article", publish=str(ROOT / "checkpoints" / "article"),
        epochs=15, batch_size=64, lr=1e-3, schedule="constant", shuffle="once", frozen_noise=True,
        noise=NoiseRecipe(rule="article", intensity=0.2), val_noise=NoiseRecipe(rule="article", intensity=0.2),
        preprocess=Preprocess(normalize_prob=1.0), val_preprocess=Preprocess(normalize_prob=1.0), half=True,
        card_title="The article's denoising autoencoder (Paperspace, reproduced)",
    ),
}


# The detect-then-fill pair (`denoiser.models.detect_fill`, the Impulse U-Net) in the default model's `moved/`
# folder: the impulse recipe's detector and the default recipe's U-Net, each from where its recipe publishes. A
# run of either recipe that publishes there assembles the pair again, so it never holds an older network.
PAIR_DETECTOR, PAIR_FILLER = "impulse", "default"


def refresh_pair() -> None:
    """Assemble the default model's moved/ pair from the two recipes' published folders, when both exist."""
    detector, filler = Path(RECIPES[PAIR_DETECTOR].publish), Path(RECIPES[PAIR_FILLER].publish)
    if is_checkpoint(detector) and is_checkpoint(filler):
        publish_pair(detector, filler=filler, out=filler / MOVED_FOLDER)


def publish_pair(detector: Path, *, filler: Path, out: Path) -> None:
    """Assemble the pair from two published checkpoints and publish it (fp16 weights, model.onnx beside). A
    refiner (the moved recipe's) already in `out` is kept, since a pair without it would lose its JPEG gains,
    but it learned the replaced pair's residual, so the run says to retrain it."""
    previous = load_model(out) if is_checkpoint(out) else None
    refiner = previous.refiner if isinstance(previous, DetectFill) else None
    pair = DetectFill.assemble(load_model(detector), load_model(filler), refiner=refiner)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(pair, tmp, card=pair_card(pair, detector=detector, filler=filler), half=True)
        copy_checkpoint(tmp, out)
    print(f"published the detect-then-fill pair ({detector.name} + {filler.name}) -> {out}")
    if refiner is not None:
        print(f"kept the refiner of {out}; it was trained on the previous pair: retrain it with "
              "`python train.py --recipe moved`")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", choices=sorted(RECIPES), help="preset all options (default: default)")
    p.add_argument("--data", help="'cifar10' (torchvision download), a CIFAR-10 root, an ImageFolder folder or a "
                   ".zip with train/<class>/... and test/<class>/... (default: cifar10)")
    p.add_argument("--out", help="run folder (default: runs/<recipe>)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--publish", metavar="DIR", help="copy the finished checkpoint here (default: "
                       "checkpoints/<recipe>, for runs on the recipe's full data and epochs only)")
    where.add_argument("--no-publish", action="store_true", help="leave checkpoints/ alone")
    p.add_argument("--resume", action="store_true", help="continue the run in --out with the settings saved there")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), help="model architecture")
    p.add_argument("--widths", type=int, nargs="+", help="unet: channels per level")
    p.add_argument("--blocks", type=int, nargs="+", help="unet: residual blocks per level")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="per process")
    p.add_argument("--lr", type=float)
    p.add_argument("--schedule", choices=["constant", "cosine"])
    p.add_argument("--loss", choices=list(LOSSES), help="mse (the article) or psnr (mean per-image log MSE)")
    p.add_argument("--noise", choices=["range", "article"], help="training noise rule")
    p.add_argument("--intensity", type=float, help="article rule intensity")
    p.add_argument("--amount", type=float, nargs=2, metavar=("MIN", "MAX"), help="range rule: amount range")
    p.add_argument("--focus", type=float, nargs=3, metavar=("SHARE", "MIN", "MAX"),
                   help="range rule: this share of images takes its amount from [MIN, MAX] instead")
    p.add_argument("--frozen-noise", action=argparse.BooleanOptionalAction, help="draw training noise once (article)")
    p.add_argument("--color", action="store_true", help="train on RGB instead of grayscale")
    p.add_argument("--photos", help="a zip or folder of training photos (bsd232/, t91/) mixed in as crops")
    p.add_argument("--no-photos", action="store_true", help="train on CIFAR-10 alone")
    p.add_argument("--init-from", metavar="CHECKPOINT", help="start from the tensors of this checkpoint folder "
                   "that match the model's names and shapes (fine-tuning)")
    p.add_argument("--init-all", action="store_true", default=None,
                   help="with --init-from, also copy the tensors the architecture starts fresh, such as the "
                        "moved recipe's refiner: to train it further on the pair it was trained on")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    p.add_argument("--train-limit", type=int, help="train on a seeded sample of N images across the classes")
    p.add_argument("--val-limit", type=int, help="validate on a fixed sample of N test images across the classes")
    p.add_argument("--save-minutes", type=float, help="minutes between mid-epoch resume points (default: 5)")
    p.add_argument("--save-every", type=int, help="also a resume point every N steps")
    p.add_argument("--half", action=argparse.BooleanOptionalAction, help="store the final weights in fp16")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the checkpoint folder, as saved, to the Hub")
    return p.parse_args(argv)


def apply_flags(base: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """`base` with every flag that was given applied over it."""
    # A local data path is kept absolute, so the run can be resumed from any working directory.
    data = str(Path(args.data).resolve()) if args.data and Path(args.data).exists() else args.data
    simple = {"recipe": args.recipe, "data": data, "out": args.out, "architecture": args.arch,
              "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "schedule": args.schedule,
              "loss": args.loss, "frozen_noise": args.frozen_noise, "seed": args.seed, "device": args.device,
              "train_limit": args.train_limit, "val_limit": args.val_limit, "save_minutes": args.save_minutes,
              "save_every": args.save_every, "half": args.half, "init_all": args.init_all,
              "init_from": str(Path(args.init_from).resolve()) if args.init_from else None}
    cfg = replace(base, **{k: v for k, v in simple.items() if v is not None})
    if args.photos or args.no_photos:
        cfg = replace(cfg, photos=None if args.no_photos else str(Path(args.photos).resolve()))
    model_config = dict(cfg.model_config)
    if args.widths:
        model_config["widths"] = args.widths
    if args.blocks:
        model_config["blocks"] = args.blocks
    if args.color:
        model_config["in_channels"] = 3
        cfg = replace(cfg, preprocess=replace(cfg.preprocess, color=True, random_channel_prob=0.0),
                      val_preprocess=replace(cfg.val_preprocess, color=True))
    noise = cfg.noise
    if args.noise:
        noise = replace(noise, rule=args.noise)
    if args.intensity is not None:
        noise = replace(noise, intensity=args.intensity)
    if args.amount:
        noise = replace(noise, amount_min=args.amount[0], amount_max=args.amount[1])
    if args.focus:
        noise = replace(noise, focus_share=args.focus[0], focus_min=args.focus[1], focus_max=args.focus[2])
    return replace(cfg, model_config=model_config, noise=noise)


def publish_decision(cfg: TrainConfig, args: argparse.Namespace) -> tuple[str | None, str]:
    """(where to publish, why not): the recipe's folder only for a run on its full data and epochs."""
    if args.no_publish:
        return None, "--no-publish"
    if args.publish:
        return args.publish, ""
    recipe = RECIPES.get(cfg.recipe)
    if recipe is None:
        return None, f"the run has no recipe to publish for ({cfg.recipe!r})"
    reasons = [f"{flag} was set" for flag, value in (("--train-limit", cfg.train_limit), ("--val-limit", cfg.val_limit))
               if value is not None]
    if cfg.epochs < recipe.epochs:
        reasons.append(f"--epochs {cfg.epochs} is below the {cfg.recipe} recipe's {recipe.epochs}")
    return (None, ", ".join(reasons)) if reasons else (recipe.publish, "")


def new_config(args: argparse.Namespace, argv: list[str]) -> TrainConfig:
    recipe = args.recipe or "default"
    cfg = apply_flags(replace(RECIPES[recipe], data="cifar10"), args)
    if cfg.init_all and not cfg.init_from:
        raise ValueError(f"--init-all copies tensors from --init-from, which the {recipe} recipe does not set: "
                         "give --init-from too")
    publish, skipped = publish_decision(cfg, args)
    return replace(cfg, publish=publish, publish_skipped=skipped, command=shlex.join(["python", "train.py", *argv]))


def resumed_config(args: argparse.Namespace) -> TrainConfig:
    """The settings saved in the run folder; flags may change only RESUME_MAY_CHANGE, and must match otherwise."""
    out = args.out or RECIPES[args.recipe or "default"].out
    saved = read_run_config(out)
    cfg = replace(apply_flags(saved, args), out=str(out))
    changed = settings_that_differ(saved, cfg)
    if changed:
        may = ", ".join(f"--{k.replace('_', '-')}" for k in RESUME_MAY_CHANGE
                        if k not in ("out", "resume", "command", "publish_skipped"))
        raise ValueError(f"--resume with settings that differ from the run in {out}: {', '.join(changed)}. "
                         f"--resume takes its settings from {Path(out) / 'train_config.json'}; only {may} "
                         "and --no-publish may be given with it")
    if args.publish or args.no_publish:
        publish, skipped = publish_decision(cfg, args)
        cfg = replace(cfg, publish=publish, publish_skipped=skipped)
    return replace(cfg, resume=True)


def config_from_args(args: argparse.Namespace, argv: list[str]) -> TrainConfig:
    return resumed_config(args) if args.resume else new_config(args, argv)


def push_checkpoint(folder: Path, repo_id: str) -> None:
    """Upload the checkpoint folder as it is on disk (fp16 weights stay fp16; card and any model.onnx go too)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=f"Upload checkpoint from {folder}")


def check_repo_id(repo_id: str) -> None:
    """A mistyped repo id is refused before training, not after it."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ValueError(f"--push-to-hub {repo_id!r}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        if args.push_to_hub:
            check_repo_id(args.push_to_hub)
        cfg = config_from_args(args, argv)
        train(cfg)
        # Only a run published where its recipe publishes refreshes the pair; `--publish DIR` leaves it alone.
        if (cfg.recipe in (PAIR_DETECTOR, PAIR_FILLER) and cfg.publish == RECIPES[cfg.recipe].publish
                and int(os.environ.get("RANK", "0")) == 0):
            refresh_pair()
    except ValueError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    if args.push_to_hub and int(os.environ.get("RANK", "0")) == 0:
        folder = Path(cfg.publish) if cfg.publish else Path(cfg.out) / "checkpoint"
        push_checkpoint(folder, args.push_to_hub)
        print(f"pushed {folder} to https://huggingface.co/{args.push_to_hub}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
