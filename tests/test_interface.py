"""The Denoiser interface and the one device rule: what every denoiser and every entry point relies on."""

import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from denoiser.interface import check_batch, select_device


def test_select_device_defaults_to_what_is_there() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device().type == expected
    assert select_device("auto").type == expected
    assert select_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given on a machine without CUDA")
def test_select_device_refuses_a_missing_gpu() -> None:
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        select_device("cuda")


def test_select_device_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="not a torch device"):
        select_device("gpu please")


@pytest.mark.parametrize("images", [torch.zeros(2, 1, 4), torch.zeros(1, 1, 4, 4, dtype=torch.uint8),
                                    torch.zeros(0, 1, 4, 4), "pixels"])
def test_check_batch_refuses_what_denoisers_cannot_take(images) -> None:
    with pytest.raises(ValueError, match="tensor|empty"):
        check_batch(images)


def test_filters_import_without_models_or_the_hub() -> None:
    # A median filter must not pay for checkpoints, models and huggingface_hub: a fresh interpreter shows
    # what `import denoiser.filters` really loads.
    code = ("import sys, denoiser.filters; heavy = [m for m in ('huggingface_hub', 'denoiser.checkpoint', "
            "'denoiser.models', 'safetensors') if m in sys.modules]; print(heavy); assert not heavy")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_package_root_still_offers_the_public_api() -> None:
    import denoiser

    assert callable(denoiser.load_denoiser) and denoiser.DEFAULT_CHECKPOINT.name == "default"
    with pytest.raises(AttributeError):
        denoiser.no_such_name  # noqa: B018
