"""The public API: load_denoiser(...).denoise(image) for every model and method, tiling, the article's 32x32 rule,
and what the shipped checkpoints achieve on real images."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import psnr_u8
from PIL import Image

from denoiser import ARTICLE_CHECKPOINT, DEFAULT_CHECKPOINT, load_denoiser
from denoiser.inference import IMPULSE_CHECKPOINT, MOVED_VIEWS
from denoiser.architectures import ARCHITECTURES, build_model
from denoiser.checkpoint import save_checkpoint
from denoiser.data import article_normalize, to_float, to_gray
from denoiser.filters import AdaptiveMedianDenoiser
from denoiser.imaging import array_to_tensor
from denoiser.interface import Denoiser
from denoiser.methods import METHODS, method
from denoiser.metrics import psnr
from denoiser.models import UNetConfig, UNetDenoiser
from denoiser.noise import article_noise, salt_and_pepper, salt_and_pepper_array
from denoiser.runners import CPU_CALL_PIXELS, ArticleDenoiser, ModelDenoiser


@pytest.fixture(params=sorted(ARCHITECTURES))
def checkpoint(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model(request.param, ARCHITECTURES[request.param].tiny)
    return save_checkpoint(model, tmp_path / request.param)


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 3), (45, 70), (45, 70, 3), (2, 2)])
def test_denoise_keeps_shape_and_dtype_and_agrees_across_them(checkpoint: Path, shape: tuple) -> None:
    denoiser = load_denoiser(checkpoint, device="cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, shape).astype(np.uint8)
    image[rng.random(shape[:2]) < 0.3] = 255  # impulses, so the switching model has pixels to repaint
    as_float = image.astype(np.float32) / 255
    out, out_float = denoiser.denoise(image), denoiser.denoise(as_float)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out_float.shape == image.shape and out_float.dtype == np.float32
    assert 0.0 <= out_float.min() and out_float.max() <= 1.0
    assert np.abs(out.astype(np.int16) - np.round(out_float * 255)).max() <= 1  # uint8 is float, rounded
    if len(shape) == 3:  # colour runs channel by channel through a grayscale network
        plain = denoiser
        if getattr(denoiser, "colour_fill", False):
            # ...then its colour fill (tests/test_colour.py) re-estimates what it repainted, and nothing else.
            plain = load_denoiser(checkpoint, device="cpu", colour_fill=False)
            by_network = plain.denoise(as_float)
            kept = by_network == as_float
            assert np.array_equal(out_float[kept], as_float[kept]) and not np.array_equal(out_float, by_network)
        for c in range(3):
            assert np.allclose(plain.denoise(as_float)[..., c], plain.denoise(np.ascontiguousarray(as_float[..., c])),
                               atol=1e-5)


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


def test_small_images_run_in_calls_of_bounded_size_with_the_same_result() -> None:
    torch.manual_seed(0)
    model = UNetDenoiser(UNetConfig(widths=(8, 16), blocks=(1, 1))).eval()
    torch.nn.init.normal_(model.tail.weight, std=0.05)
    noisy = salt_and_pepper(torch.rand(5, 3, 24, 32), amount=0.4, generator=torch.Generator().manual_seed(0))
    whole = ModelDenoiser(model, call_pixels=10**9)
    calls: list[int] = []
    bounded = ModelDenoiser(model, call_pixels=4 * 24 * 32)  # 4 channels of 24x32 per call
    bounded.core = lambda x: calls.append(len(x)) or model.forward_padded(x)
    assert (bounded.denoise_batch(noisy) - whole.denoise_batch(noisy)).abs().max().item() < 1e-5
    assert calls == [4, 4, 4, 3]  # 15 channels, folded into the batch
    assert ModelDenoiser(model).call_pixels == CPU_CALL_PIXELS  # a CPU model's default
    with pytest.raises(ValueError, match="call_pixels"):
        ModelDenoiser(model, call_pixels=0)


def test_the_default_model_tiles_at_1024_unless_told_otherwise(tmp_path: Path) -> None:
    folder = save_checkpoint(UNetDenoiser(UNetConfig(widths=(8, 16), blocks=(1, 1))), tmp_path / "unet")
    assert load_denoiser(folder, device="cpu", backend="torch").tile_size == 1024
    assert load_denoiser(folder, device="cpu", backend="torch", tile_size=256).tile_size == 256


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


# ----------------------------------------------------------------------------- the shipped checkpoints, on real images
# Figures measured with the shipped weights on the demo's 100 CIFAR-10 gallery images and the astronaut crop
# (noise seed 0): default model 29.54 dB (gray) and 29.27 dB (colour) at amount 0.5, where the adaptive median
# gets 22.86 and 22.70; 35.40 dB on the photo at 0.3 (noisy: 10.21); the article's model 24.97 dB at its rule
# 0.2 (noisy: 11.03). The floors below leave about half a dB for other CPUs' float rounding.


def test_default_checkpoint_restores_real_images(gallery_u8: torch.Tensor, photo: np.ndarray) -> None:
    denoiser = load_denoiser(device="cpu")  # no source: the shipped default
    median = AdaptiveMedianDenoiser()
    for clean, floor in ((to_gray(gallery_u8), 29.0), (to_float(gallery_u8), 28.7)):
        noisy = salt_and_pepper(clean, amount=0.5, generator=torch.Generator().manual_seed(0))
        ours = psnr(denoiser.denoise_batch(noisy), clean).mean().item()
        assert ours > floor
        assert ours > psnr(median.denoise_batch(noisy), clean).mean().item() + 5
    noisy_photo = salt_and_pepper_array(photo, amount=0.3, seed=0)
    out = denoiser.denoise(noisy_photo)
    assert psnr_u8(out, photo) > 34.5
    plain = (noisy_photo > 0) & (noisy_photo < 255)
    assert np.array_equal(out[plain], noisy_photo[plain])  # the switching design: only impulses are repainted
    assert np.array_equal(load_denoiser(DEFAULT_CHECKPOINT, device="cpu").denoise(noisy_photo), out)


# Measured on the astronaut crop, noise seed 0: the Impulse U-Net (detector, the default model's U-Net, and a
# refiner that corrects every value) returns the clean photo at 30.23 dB (the gray crop at 30.70); saved as JPEG
# q75 after noise at 0.3, 28.51 dB where the default model's exact rule alone gets 10.61 (noisy: 10.61). The
# default model hands that JPEG to the Impulse U-Net, its moved/ model, and keeps lossless images, clean or
# noisy, for its own network.
def test_impulse_checkpoint_sees_jpeg_noise_and_the_default_model_sends_it_only_such_images(photo: np.ndarray) -> None:
    impulse, exact_rule = load_denoiser(IMPULSE_CHECKPOINT, device="cpu"), load_denoiser(device="cpu", moved=False)
    default = load_denoiser(device="cpu")
    # The refiner rewrites every value. Its third and fourth runs, which learned to smooth what JPEG leaves around
    # light noise, cost clean images (this photo 41.6 -> 30.2 dB, its gray version 47.0 -> 30.7) and gained
    # 0.3-1.3 dB, then 0.2-0.7 dB, on noisy JPEGs (README, Photos); the default model, which sends it only images
    # whose impulses moved, returns clean photos almost untouched.
    assert psnr_u8(impulse.denoise(photo), photo) > 29.5
    gray = photo.mean(axis=2).astype(np.uint8)
    assert psnr_u8(impulse.denoise(gray), gray) > 30
    assert psnr_u8(default.denoise(photo), photo) > 50 and psnr_u8(default.denoise(gray), gray) > 50
    noisy = salt_and_pepper_array(photo, amount=0.3, seed=0)
    assert psnr_u8(impulse.denoise(noisy), photo) > psnr_u8(default.denoise(noisy), photo) - 0.6
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, "JPEG", quality=75)
    jpeg = np.asarray(Image.open(buffer))
    ours = psnr_u8(impulse.denoise(jpeg), photo)
    assert ours > 27.5
    assert ours > psnr_u8(exact_rule.denoise(jpeg), photo) + 15
    # The default model runs it on the mean of eight views of a photo this small (denoiser.ensemble): 0.83 dB
    # better here than one view.
    routed = default.denoise(jpeg)
    assert np.array_equal(routed, load_denoiser(IMPULSE_CHECKPOINT, device="cpu", views=MOVED_VIEWS).denoise(jpeg))
    assert psnr_u8(routed, photo) > ours + 0.5
    assert np.array_equal(default.denoise(noisy), exact_rule.denoise(noisy))


def test_article_checkpoint_reproduces_the_articles_setting(gallery_u8: torch.Tensor) -> None:
    clean = article_normalize(to_gray(gallery_u8))  # the article's inputs: min-max normalized grayscale
    noisy = article_noise(clean, intensity=0.2, generator=torch.Generator().manual_seed(0))
    denoiser = load_denoiser(ARTICLE_CHECKPOINT, device="cpu")
    assert isinstance(denoiser, ArticleDenoiser)
    assert psnr(noisy, clean).mean().item() < 11.5
    assert psnr(denoiser.denoise_batch(noisy), clean).mean().item() > 24.5


@pytest.mark.parametrize("key", list(METHODS))
def test_every_method_builds_and_denoises_a_real_photo(key: str, photo: np.ndarray) -> None:
    entry = METHODS[key]
    assert method(key) is entry and entry.key == key
    denoiser = entry.build(device="cpu")
    assert isinstance(denoiser, Denoiser) and denoiser.name == entry.label
    noisy = salt_and_pepper_array(photo, amount=0.3, seed=0)
    out = denoiser.denoise(noisy)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert psnr_u8(out, photo) > psnr_u8(noisy, photo) + 10  # measured: +12.3 dB (3x3 median) to +25.2 dB


def test_unknown_method_lists_the_keys() -> None:
    with pytest.raises(ValueError, match="choose one of default, impulse, article, median3"):
        method("sharpen")


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


def test_a_hub_repo_id_downloads_the_colour_and_moved_models_too(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import fnmatch
    import shutil

    import huggingface_hub

    from denoiser.runners import ByChannels, ByImpulses

    repo = tmp_path / "repo"
    save_checkpoint(build_model("unet", ARCHITECTURES["unet"].tiny), repo)
    save_checkpoint(build_model("unet", {**ARCHITECTURES["unet"].tiny, "in_channels": 3}), repo / "colour")
    save_checkpoint(build_model("detect_fill", ARCHITECTURES["detect_fill"].tiny), repo / "moved")
    (repo / "notes.txt").write_text("not a checkpoint file")

    def snapshot_download(*, repo_id: str, allow_patterns: list[str]) -> str:
        """The Hub's filter on repo-relative paths, over a local folder standing in for the repo."""
        assert repo_id == "owner/name"
        out = tmp_path / "snapshot"
        for path in repo.rglob("*"):
            name = path.relative_to(repo).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(name, p) for p in allow_patterns):
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, out / name)
        return str(out)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    denoiser = load_denoiser("owner/name", device="cpu", backend="torch")
    assert isinstance(denoiser, ByImpulses) and not (tmp_path / "snapshot" / "notes.txt").exists()
    assert denoiser.moved.model.architecture == "detect_fill" and isinstance(denoiser.exact, ByChannels)
    assert denoiser.exact.colour.model.config.in_channels == 3 and denoiser.exact.gray.model.config.in_channels == 1


class _Constant(Denoiser):
    """Returns every image filled with one value, and records what it was given."""

    def __init__(self, value: float) -> None:
        self.value, self.seen = value, []

    def denoise_batch(self, images: torch.Tensor, *, progress=None) -> torch.Tensor:
        self.seen.append(len(images))
        if progress:
            progress(1, 1)
        return torch.full_like(images, self.value)


def test_by_impulses_sends_each_image_of_a_batch_to_its_model(photo: np.ndarray) -> None:
    from denoiser.runners import ByImpulses

    lossless = array_to_tensor(salt_and_pepper_array(photo, amount=0.3, seed=0)).unsqueeze(0)  # (1, 3, H, W)
    moved = torch.where(lossless <= 0, 10 / 255, torch.where(lossless >= 1, 245 / 255, lossless))
    exact_model, moved_model = _Constant(0.25), _Constant(0.75)
    router = ByImpulses(exact=exact_model, moved=moved_model)
    calls = []
    out = router.denoise_batch(torch.cat([moved, lossless, lossless]), progress=lambda d, t: calls.append((d, t)))
    assert out[:, 0, 0, 0].tolist() == [0.75, 0.25, 0.25] and (exact_model.seen, moved_model.seen) == ([2], [1])
    assert calls[-1] == (1000, 1000) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert router.denoise_batch(lossless)[0, 0, 0, 0] == 0.25 and exact_model.seen[-1] == 1
    # As on a GPU: both models on the whole batch, each image's result picked on the device.
    both = ByImpulses(exact=exact_model, moved=moved_model, run_both=True)
    out = both.denoise_batch(torch.cat([moved, lossless, lossless]), progress=lambda d, t: calls.append((d, t)))
    assert out[:, 0, 0, 0].tolist() == [0.75, 0.25, 0.25] and (exact_model.seen[-1], moved_model.seen[-1]) == (3, 3)
    assert calls[-1] == (1000, 1000)


def test_the_default_model_holds_its_moved_impulse_model_unless_told_not_to() -> None:
    from denoiser.runners import ByImpulses

    default = load_denoiser(device="cpu", backend="torch")
    assert isinstance(default, ByImpulses) and default.moved.model.architecture == "detect_fill"
    assert not isinstance(load_denoiser(device="cpu", backend="torch", moved=False), ByImpulses)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_methods_built_with_one_shared_dict_hold_each_network_once_and_denoise_as_alone(photo: np.ndarray,
                                                                                        backend: str) -> None:
    pytest.importorskip("onnxruntime") if backend == "onnx" else None
    shared: dict = {}
    built = {key: METHODS[key].build(device="cpu", backend=backend, shared=shared)
             for key in ("default", "no_colour_fill", "impulse")}
    assert len(shared) == 2  # the default model's U-Net and its Impulse U-Net
    default, plain, impulse = built.values()
    assert plain.exact.core is default.exact.core and plain.exact.model is default.exact.model
    assert impulse.core is default.moved.core and not plain.exact.colour_fill and default.exact.colour_fill
    lossless = salt_and_pepper_array(photo, amount=0.3, seed=0)
    jpeg = io.BytesIO()
    Image.fromarray(lossless).save(jpeg, format="JPEG", quality=75)
    for image in (lossless, np.asarray(Image.open(jpeg))):
        for key, denoiser in built.items():
            alone = METHODS[key].build(device="cpu", backend=backend)
            assert np.array_equal(denoiser.denoise(image), alone.denoise(image)), key


def test_a_checkpoint_written_again_is_loaded_anew_from_a_shared_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    folder = save_checkpoint(UNetDenoiser(UNetConfig(widths=(8, 16), blocks=(1, 1))), tmp_path / "unet")
    shared: dict = {}
    first = load_denoiser(folder, device="cpu", backend="torch", shared=shared)
    assert load_denoiser(folder, device="cpu", backend="torch", shared=shared).model is first.model
    torch.manual_seed(1)
    save_checkpoint(UNetDenoiser(UNetConfig(widths=(8, 16), blocks=(1, 1))), folder)
    again = load_denoiser(folder, device="cpu", backend="torch", shared=shared)
    assert again.model is not first.model and len(shared) == 2
    assert not torch.equal(again.model.head.weight, first.model.head.weight)
