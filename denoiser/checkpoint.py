"""Checkpoints on disk, written and read here only: a folder with `config.json`, `model.safetensors` and a card.

* `config.json`: `{"format_version", "architecture", "config"}`, so loading rebuilds the right model
  (`denoiser.architectures`) with no code changes.
* `model.safetensors`: the weights, fp32 or fp16 (`half=True`); loading always returns fp32.
* `README.md`: the model card, a `huggingface_hub.ModelCard` (YAML metadata from `ModelCardData`, then
  Markdown), so the folder is a Hugging Face Hub model repo as it stands.
* `model.onnx` (optional): the model's core for ONNX Runtime, exported by `copy_checkpoint` when a
  checkpoint is published, with the hash of the weights it came from (`denoiser.onnx_backend`).
* `model.int8.onnx` (optional): `model.onnx` with the U-Net's deeper encoder in int8, quantized by
  `copy_checkpoint` when the training photos are at hand, naming the `model.onnx` it came from by hash
  (`denoiser.quantize`).
* `colour/` (optional): a checkpoint folder of its own, the same files, with a network for colour images
  in one pass; `denoiser.inference.load_denoiser` then sends colour images there and the rest to the
  folder's own network (`train.py --recipe default-colour` publishes one into `checkpoints/default`).
* `moved/` (optional): a checkpoint folder of its own, a model for images whose impulses moved off exact
  black and white (`denoiser.moved`); `load_denoiser` sends those images there. `checkpoints/default/moved`
  is the Impulse U-Net, which `train.py` assembles from the impulse detector and the default model's U-Net.

Writes go to a temporary folder beside the target and are renamed into place file by file, weights before
config, so a crash never leaves a half-written file where the app looks for weights, and a reader that sees
the new config sees the new weights. The optimizer and RNG state for resuming live in a separate
`resume.pt` (see `denoiser.training`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file

from denoiser.architectures import build_model
from denoiser.models import DenoisingModel

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
ONNX_FILE = "model.onnx"  # optional: the ONNX Runtime export, written at publish time (denoiser.onnx_backend)
INT8_FILE = "model.int8.onnx"  # optional: model.onnx, its deeper encoder in int8 (denoiser.quantize)
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, ONNX_FILE, INT8_FILE)
COLOUR_FOLDER = "colour"  # optional sub-folder: the checkpoint of a network for colour images
MOVED_FOLDER = "moved"  # optional sub-folder: the checkpoint of a model for impulses that moved off 0 and 1
# A reader that sees the new config sees the new weights; model.onnx names the weights it came from by hash.
WRITE_ORDER = (WEIGHTS_FILE, ONNX_FILE, INT8_FILE, CARD_FILE, CONFIG_FILE)


def _publish_files(staging: Path, directory: Path) -> None:
    for name in WRITE_ORDER:
        if (staging / name).exists():
            os.chmod(staging / name, 0o644)  # temporary files are private; checkpoints are meant to be shared
            os.replace(staging / name, directory / name)


def checkpoint_config(model: DenoisingModel) -> dict:
    """What config.json holds for `model`."""
    return {"format_version": FORMAT_VERSION, "architecture": model.architecture, "config": asdict(model.config)}


def save_checkpoint(model: DenoisingModel, directory: str | Path, *, card: ModelCard | None = None,
                    half: bool = False) -> Path:
    """Write the model (weights in fp16 when `half`) and its card into `directory`, atomically per file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{directory.name}-") as tmp:
        staging = Path(tmp)
        save_file(state, str(staging / WEIGHTS_FILE))
        (staging / CONFIG_FILE).write_text(json.dumps(checkpoint_config(model), indent=2) + "\n")
        if card is not None:
            card.save(staging / CARD_FILE)
        _publish_files(staging, directory)
    return directory


def is_checkpoint(folder: str | Path) -> bool:
    return all((Path(folder) / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE))


def resolve_source(source: str | Path) -> Path:
    """A local checkpoint folder as it is, or a Hugging Face Hub repo id downloaded into the Hub's cache."""
    path = Path(source)
    if path.is_dir():
        return path
    looks_local = str(source).startswith((".", "/")) or str(source).count("/") != 1 or path.parent.is_dir()
    if path.exists() or looks_local:
        raise ValueError(f"{source} is neither a checkpoint folder nor a Hugging Face Hub repo id (owner/name)")
    from huggingface_hub import snapshot_download  # only needed for the Hub; keeps offline use import-light

    files = [*CHECKPOINT_FILES,
             *(f"{sub}/{name}" for sub in (COLOUR_FOLDER, MOVED_FOLDER) for name in CHECKPOINT_FILES)]
    return Path(snapshot_download(repo_id=str(source), allow_patterns=files))


def read_config(folder: Path) -> dict:
    """config.json of a checkpoint folder, checked for its format version."""
    if not is_checkpoint(folder):
        raise ValueError(f"{folder} is not a checkpoint: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{folder / CONFIG_FILE} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise ValueError(f"{folder}: checkpoint format {version} is not supported "
                         f"(this version of denoiser reads format {FORMAT_VERSION})")
    return meta


def load_model(source: str | Path, *, device: str | torch.device = "cpu") -> DenoisingModel:
    """Load a checkpoint folder or a Hub repo id; returns the model in eval mode on `device`."""
    folder = resolve_source(source)
    meta = read_config(folder)
    model = build_model(meta["architecture"], meta["config"])
    state = {k: v.float() for k, v in load_file(str(folder / WEIGHTS_FILE)).items()}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def read_card(folder: str | Path) -> ModelCard | None:
    """The model card of a checkpoint folder, or None when it has none."""
    path = Path(folder) / CARD_FILE
    return ModelCard.load(path) if path.is_file() else None


def publish_bytes(data: bytes, path: Path) -> Path:
    """Write a checkpoint file through a temporary file in the same folder, readable by all, then rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)  # temporary files are private; checkpoints are meant to be shared
    os.replace(tmp, path)
    return path


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
    """Publish a finished checkpoint folder into `dst` (e.g. where the app loads it), file by file.

    `dst` also gets `model.onnx`, exported from the published weights for ONNX Runtime. When the export
    is not possible (no onnx package, a model that does not export) the checkpoint is published without
    it, with a log line, and loading exports into its cache or runs on PyTorch. A grayscale U-Net also gets
    `model.int8.onnx`, quantized from that export and calibrated on the training photos, when these are at
    hand (`denoiser.quantize`); without it, loading runs the float graph.
    """
    from denoiser.onnx_backend import OnnxUnavailable, write_export  # it imports this module
    from denoiser.quantize import quantizable, write_int8_export

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}-") as tmp:
        staging = Path(tmp)
        for name in CHECKPOINT_FILES:
            if (src / name).exists():
                shutil.copy2(src / name, staging / name)
        for stale in (staging / ONNX_FILE, staging / INT8_FILE):
            stale.unlink(missing_ok=True)  # exported anew below from the weights being published
        try:
            write_export(staging)
        except OnnxUnavailable as err:
            log.warning("publishing %s without %s: %s", dst, ONNX_FILE, err)
        if (staging / ONNX_FILE).is_file() and quantizable(staging):
            try:
                write_int8_export(staging)
            except (ValueError, ImportError) as err:  # no training photos, no quantization tools
                log.warning("publishing %s without %s: %s", dst, INT8_FILE, err)
        for name in (ONNX_FILE, INT8_FILE):
            if not (staging / name).is_file():
                (dst / name).unlink(missing_ok=True)  # an old graph of other weights must not stay beside these
        _publish_files(staging, dst)
