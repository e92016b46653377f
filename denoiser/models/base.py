"""What every denoising network in this package shares: a config dataclass and Hub-compatible saving.

Models inherit huggingface_hub's `PyTorchModelHubMixin` only so that `push_to_hub` is the library's own;
the on-disk format is ours (see `denoiser.checkpoint`): `config.json` with a format version and the
architecture name, weights in `model.safetensors`, and the model card in `README.md`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from safetensors.torch import save_file
from torch import nn

FORMAT_VERSION = 1


class DenoisingModel(nn.Module, PyTorchModelHubMixin, library_name="denoiser",
                     tags=["image-denoising", "salt-and-pepper"]):
    """Maps noisy images (B, C, H, W) in [0, 1] to estimates of the clean images, same shape."""

    architecture: ClassVar[str]
    config: Any
    model_card: str = ""

    def checkpoint_config(self) -> dict:
        return {"format_version": FORMAT_VERSION, "architecture": self.architecture, "config": asdict(self.config)}

    def _save_pretrained(self, save_directory: Path, *, half: bool = False) -> None:
        dtype = torch.float16 if half else torch.float32
        state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(save_directory / "model.safetensors"))
        (save_directory / "config.json").write_text(json.dumps(self.checkpoint_config(), indent=2) + "\n")
        if self.model_card:
            (save_directory / "README.md").write_text(self.model_card)

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        return ModelCard(self.model_card) if self.model_card else super().generate_model_card(*args, **kwargs)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
