"""int8 graphs (denoiser.quantize): which convolutions, calibration photos, publishing, loading, stale and
broken files."""

import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from denoiser import DEFAULT_CHECKPOINT, load_denoiser, photos, quantize
from denoiser.checkpoint import INT8_FILE, ONNX_FILE, copy_checkpoint, save_checkpoint
from denoiser.imaging import array_to_tensor
from denoiser.inference import ARTICLE_CHECKPOINT
from denoiser.metrics import psnr
from denoiser.noise import salt_and_pepper
from test_onnx import noisy_images, tiny_unet
from test_photos import write_collection


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Exports made at load time go to a fresh cache folder, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "denoiser" / "onnx"


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A photo collection as a zip, large enough for calibration crops: 11 training photos beside the 25 held out."""
    return write_collection(tmp_path_factory.mktemp("collection"), bsd=28, t91=8, size=quantize.CALIBRATION_SIZE)[1]


@pytest.fixture
def published(tmp_path: Path, collection: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny U-Net published the way train.py publishes, with the test collection as the training photos."""
    monkeypatch.setattr(photos, "PHOTOS_ZIP", collection)
    folder = tmp_path / "published"
    copy_checkpoint(save_checkpoint(tiny_unet(), tmp_path / "run"), folder)
    return folder


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_the_shipped_graph_quantizes_the_encoder_below_full_resolution() -> None:
    proto = onnx.load(str(DEFAULT_CHECKPOINT / ONNX_FILE))
    chosen = set(quantize.quantized_nodes(proto))
    weights = {node.input[1] for node in proto.graph.node if node.name in chosen}
    blocks = [f"model.down_blocks.{level}.{block}.conv{i}.weight"
              for level, block in ((1, 0), (2, 0), (2, 1)) for i in (1, 2)]
    assert weights == {*blocks, "model.downs.1.weight"}
    int8 = onnx.load(str(DEFAULT_CHECKPOINT / INT8_FILE))
    assert sum(node.op_type == "DequantizeLinear" for node in int8.graph.node) >= 2 * len(chosen)


def test_the_shipped_int8_graph_is_current_and_auto_runs_it() -> None:
    shipped = DEFAULT_CHECKPOINT / INT8_FILE
    assert metadata(shipped)[quantize.FLOAT_KEY] == quantize.graph_sha256((DEFAULT_CHECKPOINT / ONNX_FILE).read_bytes())
    auto = load_denoiser(device="cpu")
    assert auto.exact.backend == "onnx-int8" and auto.exact.core.origin == str(shipped)
    assert auto.moved.backend == "onnx"  # the Impulse U-Net has no int8 graph
    assert load_denoiser(device="cpu", backend="onnx-int8", moved=False).core.origin == str(shipped)
    exact = load_denoiser(device="cpu", backend="onnx", moved=False)
    assert exact.backend == "onnx" and exact.core.origin == str(DEFAULT_CHECKPOINT / ONNX_FILE)


@pytest.mark.parametrize("amount", [0.2, 0.6])
def test_int8_repaints_the_same_pixels_within_a_tenth_of_a_db(amount: float) -> None:
    from skimage import data

    clean = array_to_tensor(data.camera()[128:384, 128:384]).unsqueeze(0)  # (1, H, W) -> (1, 1, H, W)
    noisy = salt_and_pepper(clean, amount=amount, generator=torch.Generator().manual_seed(0))
    int8 = load_denoiser(device="cpu", backend="onnx-int8", moved=False).denoise_batch(noisy)
    exact = load_denoiser(device="cpu", backend="onnx", moved=False).denoise_batch(noisy)
    kept = exact == noisy
    assert torch.equal(int8[kept], noisy[kept])  # the repaint mask and the kept pixels are float in both graphs
    assert (int8 != exact).any()  # the int8 graph is really the one running
    assert abs(psnr(int8, clean).mean().item() - psnr(exact, clean).mean().item()) <= 0.1


def test_images_read_as_clean_run_the_float_graph_each_on_its_own() -> None:
    from skimage import data

    clean = array_to_tensor(data.camera()[128:384, 128:384]).unsqueeze(0)  # (1, H, W) -> (1, 1, H, W)
    g = torch.Generator().manual_seed(0)
    light, noisy = (salt_and_pepper(clean, amount=a, generator=g) for a in (0.003, 0.3))
    batch = torch.cat([light, noisy])
    int8 = load_denoiser(device="cpu", backend="onnx-int8", moved=False)
    exact = load_denoiser(device="cpu", backend="onnx", moved=False)
    a, b = int8.denoise_batch(batch), exact.denoise_batch(batch)
    assert (a[0] != light[0]).any()  # the network did repaint the lightly hit image's impulses...
    assert torch.equal(a[0], b[0])  # ...through the float graph
    assert not torch.equal(a[1], b[1])  # the noisy image through the int8 one
    assert torch.equal(a[1], int8.denoise_batch(noisy)[0])  # whatever else its batch holds


def test_calibration_reads_training_photos_only(collection: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read = []
    original = quantize.load_photos
    monkeypatch.setattr(quantize, "load_photos", lambda names, source: read.extend(names) or original(names, source))
    inputs = quantize.calibration_inputs(collection, count=6)
    held_out = set(photos.validation_names(photos.photo_names(collection)))
    assert read and held_out.isdisjoint(read)
    size = quantize.CALIBRATION_SIZE
    assert len(inputs) == 6 and all(x.shape == (1, 1, size, size) and x.dtype == np.float32 for x in inputs)
    assert all(((x == 0) | (x == 1)).mean() > 0.05 for x in inputs)  # noisy: the calibration sees impulses


def test_calibration_covers_dense_noise_and_drawn_structure(collection: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = []
    original = quantize.draw_random_structure
    monkeypatch.setattr(quantize, "draw_random_structure",
                        lambda image, generator: drawn.append(image.shape) or original(image, generator=generator))
    inputs = quantize.calibration_inputs(collection, count=10)
    assert max(((x == 0) | (x == 1)).mean() for x in inputs) > 0.85  # the slider's dense end, 0.9
    assert 0 < len(drawn) < len(inputs)  # structure in a share of the crops, as in training
    assert set(drawn) == {(1, quantize.CALIBRATION_SIZE, quantize.CALIBRATION_SIZE)}


def test_publish_writes_an_int8_graph_of_the_published_float_graph(published: Path) -> None:
    assert metadata(published / INT8_FILE)[quantize.FLOAT_KEY] == quantize.graph_sha256(
        (published / ONNX_FILE).read_bytes())
    int8 = load_denoiser(published, device="cpu")
    exact = load_denoiser(published, device="cpu", backend="onnx")
    assert (int8.backend, exact.backend) == ("onnx-int8", "onnx")
    x = noisy_images((2, 3, 40, 56))
    a, b = int8.denoise_batch(x), exact.denoise_batch(x)
    assert a.shape == x.shape and (a - b).abs().mean().item() < 0.02


def test_publish_without_training_photos_drops_an_old_int8_graph(
        published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(photos, "PHOTOS_ZIP", tmp_path / "missing.zip")
    with caplog.at_level(logging.WARNING):
        copy_checkpoint(save_checkpoint(tiny_unet(seed=1), tmp_path / "newer"), published)
    assert f"without {INT8_FILE}" in caplog.text and "no photo collection" in caplog.text
    assert (published / ONNX_FILE).is_file() and not (published / INT8_FILE).exists()
    assert load_denoiser(published, device="cpu").backend == "onnx"


def test_new_weights_make_the_int8_graph_stale(published: Path, cache: Path) -> None:
    save_checkpoint(tiny_unet(seed=1), published)  # new weights; both graphs are left from the old ones
    denoiser = load_denoiser(published, device="cpu")
    assert denoiser.backend == "onnx" and denoiser.core.origin.startswith(str(cache))


def test_an_int8_graph_of_another_float_graph_is_not_used(
        published: Path, caplog: pytest.LogCaptureFixture) -> None:
    proto = onnx.load(str(published / INT8_FILE))
    for entry in proto.metadata_props:
        if entry.key == quantize.FLOAT_KEY:
            entry.value = "0" * 64
    onnx.save(proto, str(published / INT8_FILE))
    with caplog.at_level(logging.WARNING):
        denoiser = load_denoiser(published, device="cpu")
    assert "stale" in caplog.text
    assert denoiser.backend == "onnx" and denoiser.core.origin == str(published / ONNX_FILE)


@pytest.mark.parametrize("garbage", [b"", b"not an onnx file", b"\x08\x07" * 1000])
def test_a_corrupt_int8_graph_falls_back_to_the_float_one(
        published: Path, caplog: pytest.LogCaptureFixture, garbage: bytes) -> None:
    (published / INT8_FILE).write_bytes(garbage)
    with caplog.at_level(logging.WARNING):
        denoiser = load_denoiser(published, device="cpu", backend="onnx-int8")
    assert "cannot load it" in caplog.text
    assert denoiser.backend == "onnx" and denoiser.core.origin == str(published / ONNX_FILE)
    assert denoiser.denoise_batch(noisy_images((1, 1, 16, 16))).shape == (1, 1, 16, 16)


def test_int8_on_a_gpu_is_refused(published: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the refusal comes before any CUDA use
    with pytest.raises(ValueError, match="CPU only"):
        load_denoiser(published, device="cuda", backend="onnx-int8")


def test_the_command_quantizes_a_folder_and_refuses_other_models(
        published: Path, collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (published / INT8_FILE).unlink()
    quantize.main([str(published), "--photos", str(collection)])
    assert capsys.readouterr().out.strip() == str(published / INT8_FILE)
    assert load_denoiser(published, device="cpu").backend == "onnx-int8"
    article = shutil.copytree(ARTICLE_CHECKPOINT, tmp_path / "article")
    with pytest.raises(SystemExit):
        quantize.main([str(article), "--photos", str(collection)])
    assert "only grayscale unet checkpoints are quantized" in capsys.readouterr().err


def test_publish_without_the_exporter_drops_both_old_graphs(
        published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    copy_checkpoint(save_checkpoint(tiny_unet(seed=1), tmp_path / "newer"), published)
    assert not (published / ONNX_FILE).exists() and not (published / INT8_FILE).exists()
