"""Train a salt-and-pepper denoiser: `python train.py` refreshes checkpoints/default.

Two recipes set every default; any flag overrides them:
  default  the switching U-Net, blind to the noise amount (0 to 0.95), grayscale and per-channel colour
  article  the Paperspace article exactly: its autoencoder, 15 epochs, batch 64, Adam 1e-3, MSE, the
           article's noise rule at 0.2 drawn once, min-max normalized grayscale images, one fixed order

Examples:
  python train.py --data ../shared/data/cifar10-images.zip
  python train.py --recipe article --data ../shared/data/cifar10-images.zip
  torchrun --nproc_per_node=4 train.py --data /path/to/cifar10 --batch-size 32
  python train.py --out runs/default --resume          # continue a killed run
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from denoiser.architectures import ARCHITECTURES
from denoiser.data import Preprocess
from denoiser.noise import NoiseRecipe
from denoiser.training import LOSSES, TrainConfig, train

ROOT = Path(__file__).resolve().parent

RECIPES = {
    "default": TrainConfig(
        architecture="unet", out="runs/default", publish=str(ROOT / "checkpoints" / "default"),
        epochs=40, batch_size=64, lr=2e-3, schedule="cosine", loss="psnr", shuffle="epoch", frozen_noise=False,
        # Amounts 0 to 0.95, with 30% of images drawn from 0.4-0.85 instead: heavy noise is where the model
        # has the least to spare, light noise is far ahead of every other method.
        noise=NoiseRecipe(rule="range", amount_min=0.0, amount_max=0.95, salt_share_min=0.3, salt_share_max=0.7,
                          focus_share=0.3, focus_min=0.4, focus_max=0.85),
        val_noise=NoiseRecipe(rule="range", amount_min=0.5, amount_max=0.5),
        preprocess=Preprocess(random_channel_prob=0.5, flip=True, normalize_prob=0.2),
        val_preprocess=Preprocess(), card_title="Default denoiser: switching U-Net autoencoder",
    ),
    "article": TrainConfig(
        architecture="article", out="runs/article", publish=str(ROOT / "checkpoints" / "article"),
        epochs=15, batch_size=64, lr=1e-3, schedule="constant", shuffle="once", frozen_noise=True,
        noise=NoiseRecipe(rule="article", intensity=0.2), val_noise=NoiseRecipe(rule="article", intensity=0.2),
        preprocess=Preprocess(normalize_prob=1.0), val_preprocess=Preprocess(normalize_prob=1.0), half=True,
        card_title="The article's denoising autoencoder (Paperspace, reproduced)",
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", choices=sorted(RECIPES), default="default", help="preset all options (default: default)")
    p.add_argument("--data", default="cifar10", help="'cifar10' (torchvision download), a CIFAR-10 root, an "
                   "ImageFolder folder or a .zip with train/<class>/... and test/<class>/... (default: cifar10)")
    p.add_argument("--out", help="run folder (default: runs/<recipe>)")
    p.add_argument("--publish", help="copy the finished checkpoint here (default: checkpoints/<recipe>)")
    p.add_argument("--no-publish", action="store_true", help="leave checkpoints/ alone")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its resume.pt")
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
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    p.add_argument("--train-limit", type=int, help="use only the first N training images")
    p.add_argument("--val-limit", type=int, help="use only the first N test images for validation")
    p.add_argument("--save-every", type=int, help="steps between mid-epoch resume states")
    p.add_argument("--half", action=argparse.BooleanOptionalAction, help="publish fp16 weights")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the published checkpoint and card to the Hub")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace, argv: list[str]) -> TrainConfig:
    cfg = replace(RECIPES[args.recipe], data=args.data, command=shlex.join(["python", "train.py", *argv]))
    simple = {"out": args.out, "architecture": args.arch, "epochs": args.epochs, "batch_size": args.batch_size,
              "lr": args.lr, "schedule": args.schedule, "loss": args.loss, "frozen_noise": args.frozen_noise,
              "seed": args.seed, "device": args.device, "train_limit": args.train_limit, "val_limit": args.val_limit,
              "save_every": args.save_every, "half": args.half, "publish": args.publish}
    cfg = replace(cfg, **{k: v for k, v in simple.items() if v is not None}, resume=args.resume)
    if args.no_publish:
        cfg = replace(cfg, publish=None)
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        cfg = config_from_args(args, argv)
        train(cfg)
    except ValueError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    if args.push_to_hub:
        from denoiser.checkpoint import load_model

        source = cfg.publish or str(Path(cfg.out) / "checkpoint")
        load_model(source).push_to_hub(args.push_to_hub)  # huggingface_hub's own upload, card included
        print(f"pushed {source} to https://huggingface.co/{args.push_to_hub}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
