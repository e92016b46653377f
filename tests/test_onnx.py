"""ONNX Runtime backend: same outputs as PyTorch, export at publish, stale and broken files, fallbacks."""

import logging
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from denoiser import DEFAULT_CHECKPOINT, load_denoiser
from denoiser import onnx_backend, photos
from denoiser.architectures import ARCHITECTURES, build_model
from denoiser.checkpoint import COLOUR_FOLDER, ONNX_FILE, copy_checkpoint, save_checkpoint
from denoiser.methods import METHODS
from denoiser.models import UNetDenoiser
from denoiser.moved import moved_impulses
from denoiser.noise import salt_and_pepper

TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Exports made at load time go to a fresh cache folder, never the user's; checkpoints published here get
    no int8 graph (no training photos to calibrate on; tests/test_quantize.py tests those), so that auto runs
    the float graph these tests compare with PyTorch."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(photos, "PHOTOS_ZIP", tmp_path / "no-photos.zip")
    return tmp_path / "xdg" / "denoiser" / "onnx"


def tiny_unet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("unet", ARCHITECTURES["unet"].tiny)
    nn.init.normal_(model.tail.weight, std=0.05)  # an untrained tail is zero: make the output depend on the network
    return model


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tiny_unet(), tmp_path / "tiny")


def noisy_images(shape: tuple[int, ...], *, seed: int = 0) -> torch.Tensor:
    """Salt-and-pepper at 0.4 over random pixels, with a clipped white and a clipped black region."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(shape, generator=g)
    h, w = shape[-2:]
    clean[..., : h // 2, : w // 3] = 1.0
    clean[..., h // 2 :, w // 2 :] = 0.0
    return salt_and_pepper(clean, amount=0.4, generator=g)


def both(source: Path, **options) -> tuple:
    onnx = load_denoiser(source, device="cpu", backend="onnx", **options)
    torch_ = load_denoiser(source, device="cpu", backend="torch", **options)
    assert (onnx.backend, torch_.backend) == ("onnx", "torch")
    return onnx, torch_


SHAPES = [(1, 1, 8, 8), (2, 1, 37, 53), (1, 3, 37, 53), (3, 3, 16, 24), (1, 1, 2, 2)]


@pytest.mark.parametrize("shape", SHAPES)
def test_onnx_matches_torch_on_a_tiny_unet(tiny_checkpoint: Path, shape: tuple) -> None:
    onnx, torch_ = both(tiny_checkpoint)
    x = noisy_images(shape)
    assert (onnx.denoise_batch(x) - torch_.denoise_batch(x)).abs().max().item() <= TOLERANCE


def test_many_small_images_run_side_by_side_on_single_threaded_sessions(tiny_checkpoint: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # as on a 2-core machine, whatever runs the tests
    onnx, torch_ = both(tiny_checkpoint)
    core = onnx.core
    assert onnx.call_pixels == core.call_pixels  # the runner cuts the batch as the ONNX core asks
    threads: set[str] = set()
    single_run = core._single_threaded()[0].run
    monkeypatch.setattr(core._single_threaded()[0], "run",
                        lambda *a, **k: threads.add(threading.current_thread().name) or single_run(*a, **k))
    per_call = core.call_pixels // (16 * 16)
    x = noisy_images((3 * per_call + 5, 3, 16, 16))  # channels: 9 full calls and a short one
    assert (onnx.denoise_batch(x) - torch_.denoise_batch(x)).abs().max().item() <= TOLERANCE  # order kept
    assert len(threads) == 2 and all(t.startswith("onnx-core") for t in threads)
    assert core._single_threaded()[0].get_session_options().intra_op_num_threads == 1
    big = noisy_images((1, 3, 300, 300))  # a part bigger than call_pixels runs on the shared session
    threads.clear()
    assert (onnx.denoise_batch(big) - torch_.denoise_batch(big)).abs().max().item() <= TOLERANCE
    assert not threads


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_exports_and_matches_torch(arch: str, tmp_path: Path) -> None:
    """Whatever the default model becomes, its core exports through the same path."""
    torch.manual_seed(0)
    model = build_model(arch, ARCHITECTURES[arch].tiny)
    for p in model.parameters():  # untrained layers may start at zero: make every one count
        nn.init.normal_(p, std=0.1)
    onnx, torch_ = both(save_checkpoint(model, tmp_path / arch))
    for shape in [(1, 1, 37, 53), (2, 3, 40, 33)]:
        x = noisy_images(shape)
        assert (onnx.denoise_batch(x) - torch_.denoise_batch(x)).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("shape", [(1, 1, 70, 90), (1, 3, 70, 50)])
def test_onnx_matches_torch_tiled_and_tiles_match_the_whole(tiny_checkpoint: Path, shape: tuple) -> None:
    onnx, torch_ = both(tiny_checkpoint, tile_size=32)
    whole = load_denoiser(tiny_checkpoint, device="cpu", backend="onnx", tile_size=128)
    x = noisy_images(shape)
    tiled = onnx.denoise_batch(x)
    assert (tiled - torch_.denoise_batch(x)).abs().max().item() <= TOLERANCE
    assert (tiled - whole.denoise_batch(x)).abs().max().item() <= 1e-3


@pytest.mark.parametrize("shape", [(1, 1, 45, 70), (1, 3, 45, 70), (2, 3, 32, 32)])
def test_onnx_matches_torch_on_the_shipped_checkpoint(shape: tuple) -> None:
    onnx, torch_ = both(DEFAULT_CHECKPOINT)
    assert onnx.exact.core.origin == str(DEFAULT_CHECKPOINT / ONNX_FILE)  # the shipped export is current
    x = noisy_images(shape)
    # The same impulses 10 levels off black and white: the default model's moved/ model (the Impulse U-Net) takes them.
    moved = torch.where(x <= 0, 10 / 255, torch.where(x >= 1, 245 / 255, x))
    assert moved_impulses(moved).all()
    for images in (x, moved):
        assert (onnx.denoise_batch(images) - torch_.denoise_batch(images)).abs().max().item() <= TOLERANCE


def test_export_folds_the_unshuffle_into_the_head_convolution(tiny_checkpoint: Path) -> None:
    import onnx

    runner = load_denoiser(tiny_checkpoint, device="cpu", backend="torch")
    nodes = onnx.load_from_string(onnx_backend.export_bytes(runner, "x")).graph.node
    assert not any(node.op_type == "SpaceToDepth" for node in nodes)
    # The unshuffle's 6-D transpose, which ONNX Runtime spent 4% on (the exporter's own transposes of padding
    # vectors, for the runs' F.pad, are 2-D; the runs' row sums swap a map's last two axes, 4-D).
    perms = [list(a.ints) for node in nodes if node.op_type == "Transpose" for a in node.attribute if a.name == "perm"]
    assert perms and all(len(perm) <= 4 for perm in perms)


def test_export_sums_runs_down_columns_only(tiny_checkpoint: Path) -> None:
    """ONNX Runtime adds up a last axis one value at a time; the traced line rule transposes rows to columns."""
    import onnx
    from onnx import numpy_helper

    runner = load_denoiser(tiny_checkpoint, device="cpu", backend="torch")
    graph = onnx.load_from_string(onnx_backend.export_bytes(runner, "x")).graph
    constants = {node.output[0]: numpy_helper.to_array(node.attribute[0].t)
                 for node in graph.node if node.op_type == "Constant" and node.attribute[0].name == "value"}
    constants |= {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    axes = [int(constants[node.input[1]]) for node in graph.node if node.op_type == "CumSum"]
    assert len(axes) == 6  # rows and columns of both extremes' maps, and the box sums of both
    assert all(axis in (-2, 2) for axis in axes)


def test_shipped_checkpoint_tiled_on_onnx_matches_torch_and_the_whole() -> None:
    onnx, torch_ = both(DEFAULT_CHECKPOINT, tile_size=128)
    x = noisy_images((1, 1, 200, 150))
    tiled = onnx.denoise_batch(x)
    assert (tiled - torch_.denoise_batch(x)).abs().max().item() <= TOLERANCE
    whole = load_denoiser(DEFAULT_CHECKPOINT, device="cpu", backend="onnx").denoise_batch(x)
    assert (tiled - whole).abs().max().item() <= 1e-3


def test_auto_uses_onnx_on_the_cpu_and_the_cache_is_reused(tiny_checkpoint: Path, cache: Path) -> None:
    first = load_denoiser(tiny_checkpoint, device="cpu")
    assert first.backend == "onnx"
    cached = cache / f"{onnx_backend.source_hash(tiny_checkpoint)}.onnx"
    assert first.core.origin == str(cached) and cached.is_file()
    assert not (tiny_checkpoint / ONNX_FILE).exists()  # loading never writes into the checkpoint
    stamp = cached.stat().st_mtime_ns
    assert load_denoiser(tiny_checkpoint, device="cpu").core.origin == str(cached)
    assert cached.stat().st_mtime_ns == stamp  # read, not exported again


def test_without_onnxruntime_auto_falls_back_and_onnx_refuses(
        tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with caplog.at_level(logging.WARNING):
        denoiser = load_denoiser(tiny_checkpoint, device="cpu")
    assert denoiser.backend == "torch"
    assert "onnxruntime is not installed" in caplog.text
    assert denoiser.denoise_batch(noisy_images((1, 3, 16, 16))).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="onnxruntime is not installed"):
        load_denoiser(tiny_checkpoint, device="cpu", backend="onnx")


def test_onnx_on_a_gpu_is_refused(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the refusal comes before any CUDA use
    with pytest.raises(ValueError, match="CPU only"):
        load_denoiser(tiny_checkpoint, device="cuda", backend="onnx")


def test_unknown_backend_is_refused(tiny_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        load_denoiser(tiny_checkpoint, device="cpu", backend="tensorrt")


def test_publish_writes_a_current_model_onnx(tiny_checkpoint: Path, tmp_path: Path, cache: Path) -> None:
    published = tmp_path / "published"
    copy_checkpoint(tiny_checkpoint, published)
    assert (published / ONNX_FILE).is_file()
    denoiser = load_denoiser(published, device="cpu")
    assert denoiser.core.origin == str(published / ONNX_FILE)
    assert not cache.exists()  # nothing exported at load time


def test_stale_model_onnx_is_detected_and_not_used(
        tiny_checkpoint: Path, tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    published = tmp_path / "published"
    copy_checkpoint(tiny_checkpoint, published)
    old_export = (published / ONNX_FILE).read_bytes()
    save_checkpoint(tiny_unet(seed=1), published)  # new weights; model.onnx is left from the old ones
    with caplog.at_level(logging.WARNING):
        onnx, torch_ = both(published)
    assert "stale" in caplog.text
    assert onnx.core.origin == str(cache / f"{onnx_backend.source_hash(published)}.onnx")
    assert (published / ONNX_FILE).read_bytes() == old_export  # left as it was
    x = noisy_images((1, 3, 20, 20))
    assert (onnx.denoise_batch(x) - torch_.denoise_batch(x)).abs().max().item() <= TOLERANCE


def test_model_onnx_from_older_model_code_is_detected(
        tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Same weights and config, but the network's code changed since the export: the check input shows it."""
    published = tmp_path / "published"
    copy_checkpoint(tiny_checkpoint, published)
    original = UNetDenoiser.forward_padded
    monkeypatch.setattr(UNetDenoiser, "forward_padded", lambda self, x: original(self, x).clamp(0.25, 0.75))
    with caplog.at_level(logging.WARNING):
        onnx, torch_ = both(published)
    assert "code changed" in caplog.text and onnx.core.origin != str(published / ONNX_FILE)
    x = noisy_images((1, 1, 24, 24))
    assert (onnx.denoise_batch(x) - torch_.denoise_batch(x)).abs().max().item() <= TOLERANCE


def test_config_change_makes_model_onnx_stale(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The saturation threshold is a constant in the graph, so a config edit must count as stale."""
    published = tmp_path / "published"
    copy_checkpoint(tiny_checkpoint, published)
    before = onnx_backend.source_hash(published)
    config = (published / "config.json").read_text().replace('"saturation_z": 2.5', '"saturation_z": 2.0')
    assert '"saturation_z": 2.0' in config
    (published / "config.json").write_text(config)
    assert onnx_backend.source_hash(published) != before
    assert load_denoiser(published, device="cpu").core.origin != str(published / ONNX_FILE)


@pytest.mark.parametrize("garbage", [b"", b"not an onnx file", b"\x08\x07" * 1000])
def test_corrupt_model_onnx_is_replaced_by_an_export_or_falls_back(
        tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, garbage: bytes) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / ONNX_FILE).write_bytes(garbage)
    with caplog.at_level(logging.WARNING):
        denoiser = load_denoiser(folder, device="cpu", backend="onnx")
    assert "cannot load it" in caplog.text and denoiser.core.origin != str(folder / ONNX_FILE)
    assert denoiser.denoise_batch(noisy_images((1, 1, 16, 16))).shape == (1, 1, 16, 16)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "onnx", None)  # no exporter either: nothing usable in ONNX
    assert load_denoiser(folder, device="cpu").backend == "torch"
    with pytest.raises(ValueError, match="needs the onnx package"):
        load_denoiser(folder, device="cpu", backend="onnx")


def test_unwritable_cache_keeps_the_export_in_memory(
        tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    denoiser = load_denoiser(tiny_checkpoint, device="cpu", backend="onnx")
    assert denoiser.core.origin == "memory"


def test_publish_without_the_exporter_drops_an_old_model_onnx(
        tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    published = tmp_path / "published"
    copy_checkpoint(tiny_checkpoint, published)
    monkeypatch.setitem(sys.modules, "onnx", None)
    copy_checkpoint(save_checkpoint(tiny_unet(seed=1), tmp_path / "newer"), published)
    assert not (published / ONNX_FILE).exists()
    assert (published / "model.safetensors").read_bytes() == (tmp_path / "newer" / "model.safetensors").read_bytes()


class _ShapeBranch(nn.Module):
    """A core with a Python branch on the input's width, which tracing bakes in as a constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.shape[-1] > 20 else x


class _BranchRunner:
    model, core_method, dynamic_dims = _ShapeBranch(), "forward", (0, 2, 3)

    def export_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 32)


def test_an_export_that_disagrees_with_torch_is_refused() -> None:
    _BranchRunner.model.register_parameter("w", nn.Parameter(torch.zeros(1)))  # export_bytes checks the device
    with pytest.raises(onnx_backend.OnnxUnavailable, match="differs from PyTorch"):
        onnx_backend.export_bytes(_BranchRunner(), "0" * 64)


def test_method_build_passes_the_backend_and_filters_ignore_it() -> None:
    assert METHODS["default"].build(device="cpu", backend="torch").backend == "torch"
    assert METHODS["default"].build(device="cpu", backend="onnx").backend == "onnx"
    assert METHODS["median3"].build(device="cpu", backend="onnx").denoise_batch(torch.rand(1, 1, 8, 8)).shape[-1] == 8


def test_a_folder_with_a_colour_network_runs_colour_images_through_it_on_either_backend(tiny_checkpoint: Path,
                                                                                         tmp_path: Path) -> None:
    torch.manual_seed(1)
    colour_net = build_model("unet", {**ARCHITECTURES["unet"].tiny, "in_channels": 3})
    nn.init.normal_(colour_net.tail.weight, std=0.05)
    folder = tmp_path / "pair"
    copy_checkpoint(tiny_checkpoint, folder)
    copy_checkpoint(save_checkpoint(colour_net, tmp_path / "colour-only"), folder / COLOUR_FOLDER)
    assert (folder / COLOUR_FOLDER / ONNX_FILE).is_file()  # published with its own export
    copy_checkpoint(tiny_checkpoint, folder)  # `python train.py` publishing the gray network again...
    assert (folder / COLOUR_FOLDER / ONNX_FILE).is_file()  # ...leaves the colour one in place
    onnx, torch_ = both(folder)
    assert onnx.colour.core.origin == str(folder / COLOUR_FOLDER / ONNX_FILE)
    for shape, alone in (((2, 3, 37, 53), folder / COLOUR_FOLDER), ((2, 1, 37, 53), tiny_checkpoint)):
        x = noisy_images(shape)
        out = onnx.denoise_batch(x)
        assert (out - torch_.denoise_batch(x)).abs().max().item() <= TOLERANCE
        # Each image went through the network for its channels, the colour fill included.
        expected = load_denoiser(alone, device="cpu", backend="torch").denoise_batch(x)
        assert (out - expected).abs().max().item() <= TOLERANCE
    colour_alone = load_denoiser(folder / COLOUR_FOLDER, device="cpu", backend="torch", colour_fill=False)
    x = noisy_images((1, 3, 37, 53))
    assert colour_alone.colour_fill is False
    assert torch.equal(load_denoiser(folder, device="cpu", backend="torch", colour_fill=False).denoise_batch(x),
                       colour_alone.denoise_batch(x))  # options reach both networks
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        onnx.denoise_batch(torch.rand(3, 8, 8))


def test_the_speed_benchmark_times_both_backends_and_a_compared_checkpoint(tiny_checkpoint: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.onnx_speed", "--runs", "1", "--checkpoint",
                           str(tiny_checkpoint), "--cases", "32x32-gray", "--compare", str(tiny_checkpoint)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 32×32 gray")]
    # case, torch, then time, speed-up, run by run and difference for onnx and for onnx-int8, compared: 2 columns
    assert len(rows) == 1 and len(cells := rows[0].strip("|").split("|")) == 12
    assert all(re.fullmatch(r"\d+\.\d\d-\d+\.\d\d×", cells[i].strip()) for i in (4, 8))
    assert "compared with" in done.stdout
