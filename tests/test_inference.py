"""The public API: load_denoiser(...).denoise(image) for every model, tiling, and the article's 32x32 rule."""

from pathlib import Path

import numpy as np
import pytest
import torch

from denoiser import ARTICLE_CHECKPOINT, DEFAULT_CHECKPOINT, load_denoiser
from denoiser.architectures import ARCHITECTURES, build_model
from denoiser.checkpoint import save_checkpoint
from denoiser.runners import ArticleDenoiser, ModelDenoiser
from denoiser.models import UNetConfig, UNetDenoiser
from denoiser.noise import salt_and_pepper

@pytest.fixture(params=sorted(ARCHITECTURES))
def checkpoint(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model(request.param, ARCHITECTURES[request.param].tiny)
    return save_checkpoint(model, tmp_path / request.param)


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 3), (45, 70), (45, 70, 3), (2, 2)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_denoise_keeps_shape_and_dtype(checkpoint: Path, shape: tuple, dtype) -> None:
    denoiser = load_denoiser(checkpoint, device="cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, shape).astype(np.uint8) if dtype == np.uint8 else rng.random(shape, dtype=np.float32)
    out = denoiser.denoise(image)
    assert out.shape == image.shape and out.dtype == image.dtype
    if dtype == np.float32:
        assert 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("image, message", [
    ("not an array", "numpy array"),
    (np.zeros((4, 4, 4), np.uint8), "shaped"),
    (np.zeros((1, 9), np.uint8), "at least 2x2"),
    (np.zeros((8, 8), np.int64), "uint8 or float32"),
    (np.full((8, 8), 2.0, np.float32), r"\[0, 1\]"),
    (np.full((8, 8), np.nan, np.float32), "NaN"),
])
def test_bad_images_get_clear_errors(checkpoint: Path, image, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_denoiser(checkpoint, device="cpu").denoise(image)


def test_tiled_matches_untiled_above_the_threshold() -> None:
    torch.manual_seed(0)
    model = UNetDenoiser(UNetConfig()).eval()
    torch.nn.init.normal_(model.tail.weight, std=0.05)  # an untrained tail is zero: make the output depend on context
    denoiser = ModelDenoiser(model, tile_size=512)
    clean = torch.rand(1, 1, 600, 560)
    noisy = salt_and_pepper(clean, amount=0.5, generator=torch.Generator().manual_seed(0))
    tiled = denoiser.denoise_batch(noisy)  # 600x560 > 512x512: tiled
    with torch.inference_mode():
        untiled = model(noisy).clamp(0, 1)
    assert (tiled - untiled).abs().max().item() < 1e-3
    assert denoiser.peak_tile_pixels < 600 * 560 * 2


def test_channels_last_layout_does_not_change_outputs() -> None:
    torch.manual_seed(0)
    model = UNetDenoiser(UNetConfig()).eval()
    torch.nn.init.normal_(model.tail.weight, std=0.05)
    noisy = salt_and_pepper(torch.rand(4, 1, 32, 32), amount=0.5, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        plain = model(noisy).clamp(0, 1)
    fast = ModelDenoiser(model).denoise_batch(noisy)  # converts the weights to channels_last
    assert model.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert (fast - plain).abs().max().item() < 1e-5


def test_article_runs_in_32x32_tiles_per_channel(tmp_path: Path) -> None:
    torch.manual_seed(0)
    save_checkpoint(build_model("article", ARCHITECTURES["article"].tiny), tmp_path / "a")
    denoiser = load_denoiser(tmp_path / "a", device="cpu")
    assert isinstance(denoiser, ArticleDenoiser)
    image = torch.rand(1, 3, 64, 96)
    out = denoiser.denoise_batch(image)
    with torch.inference_mode():
        top_left_red = denoiser.model(image[:, :1, :32, :32]).clamp(0, 1)
        right_blue = denoiser.model(image[:, 2:, 32:, 64:]).clamp(0, 1)
    assert torch.allclose(out[:, :1, :32, :32], top_left_red, atol=1e-6)
    assert torch.allclose(out[:, 2:, 32:, 64:], right_blue, atol=1e-6)


@pytest.mark.parametrize("folder", [DEFAULT_CHECKPOINT, ARTICLE_CHECKPOINT], ids=["default", "article"])
def test_shipped_checkpoints_denoise(folder: Path) -> None:
    denoiser = load_denoiser(folder, device="cpu")
    clean = np.tile(np.linspace(0.2, 0.8, 32, dtype=np.float32), (32, 1))
    noisy = salt_and_pepper(torch.from_numpy(clean)[None, None], amount=0.2,
                            generator=torch.Generator().manual_seed(0))[0, 0].numpy()
    out = denoiser.denoise(noisy)
    assert np.abs(out - clean).mean() < np.abs(noisy - clean).mean() / 2


def test_load_denoiser_without_source_loads_the_default() -> None:
    assert load_denoiser(device="cpu").name == "Default model"


def test_read_only_arrays_denoise_without_warnings() -> None:
    # np.asarray(PIL image) is read-only; torch warns (once per process) when such memory is shared, so a
    # fresh interpreter with warnings as errors is the only place this can be seen.
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import numpy as np; from denoiser import load_denoiser\n"
            "image = np.full((20, 24, 3), 128, np.uint8); image[::3, ::2] = 255; image.setflags(write=False)\n"
            "out = load_denoiser(device='cpu').denoise(image); assert out.shape == image.shape")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
