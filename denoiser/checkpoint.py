"""Checkpoints on disk: a folder with `config.json`, `model.safetensors` and a `README.md` model card.

`config.json` names the architecture, its config and the format version, so loading rebuilds the right
model with no code changes. Writes go to a temporary folder beside the target and are renamed into place
file by file, so a crash never leaves a half-written file where the app looks for weights. The
optimizer and RNG state for resuming live in a separate `resume.pt` (see `denoiser.training`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from denoiser.models import FORMAT_VERSION, ArticleAutoencoder, ArticleConfig, DenoisingModel, UNetConfig, UNetDenoiser

CHECKPOINT_FILES = ("config.json", "model.safetensors", "README.md")
WRITE_ORDER = ("model.safetensors", "README.md", "config.json")  # a reader that sees the new config sees the new weights


def _publish_files(staging: Path, directory: Path) -> None:
    for name in WRITE_ORDER:
        if (staging / name).exists():
            os.chmod(staging / name, 0o644)  # temporary files are private; checkpoints are meant to be shared
            os.replace(staging / name, directory / name)


def build_model(architecture: str, config: dict) -> DenoisingModel:
    """Rebuild a model from the architecture name and config dict stored in `config.json`."""
    if architecture == "article":
        return ArticleAutoencoder(ArticleConfig(**config))
    if architecture == "unet":
        return UNetDenoiser(UNetConfig(**config))
    raise ValueError(f"unknown architecture {architecture!r} (expected 'article' or 'unet')")


def save_checkpoint(model: DenoisingModel, directory: str | Path, *, card: str = "", half: bool = False) -> Path:
    """Write the model (weights in fp16 when `half`) and its card into `directory`, atomically per file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.model_card = card
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{directory.name}-") as tmp:
        model._save_pretrained(Path(tmp), half=half)
        _publish_files(Path(tmp), directory)
    return directory


def _local_folder(source: str | Path) -> Path:
    path = Path(source)
    if path.is_dir():
        return path
    looks_local = str(source).startswith((".", "/")) or str(source).count("/") != 1 or path.parent.is_dir()
    if path.exists() or looks_local:
        raise ValueError(f"{source} is neither a checkpoint folder nor a Hugging Face Hub repo id (owner/name)")
    from huggingface_hub import snapshot_download  # only needed for the Hub; keeps offline use import-light

    return Path(snapshot_download(repo_id=str(source), allow_patterns=list(CHECKPOINT_FILES)))


def load_model(source: str | Path, *, device: str | torch.device = "cpu") -> DenoisingModel:
    """Load a checkpoint folder or a Hub repo id; returns the model in eval mode on `device`."""
    folder = _local_folder(source)
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ValueError(f"{folder} is not a checkpoint: it needs config.json and model.safetensors")
    meta = json.loads(config_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder}: checkpoint format {meta.get('format_version')} is not supported "
                         f"(this version of denoiser reads format {FORMAT_VERSION})")
    model = build_model(meta["architecture"], meta["config"])
    state = {k: v.float() for k, v in load_file(str(weights_path)).items()}
    model.load_state_dict(state, strict=True)
    if (folder / "README.md").is_file():
        model.model_card = (folder / "README.md").read_text()
    return model.to(device).eval()


def atomic_torch_save(obj: object, path: str | Path) -> None:
    """torch.save through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def copy_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Publish a finished checkpoint folder into `dst` (e.g. where the app loads it), file by file."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}-") as tmp:
        for name in CHECKPOINT_FILES:
            if (src / name).exists():
                shutil.copy2(src / name, Path(tmp) / name)
        _publish_files(Path(tmp), dst)
