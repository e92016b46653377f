"""An int8 ONNX graph of the default U-Net's deeper encoder: ONNX Runtime's static quantization (issue 13).

Which convolutions: the U-Net trunk's encoder side below full resolution, that is the residual blocks of
level 1 and deeper and the 2x2 down convs out of level 1 and deeper (`quantized_nodes`). The head, the tail,
level 0's blocks, the down conv into level 1, every up conv and every decoder block stay in float32, and so
does everything that is not a convolution: the exact-extreme tests, window counts and runs that decide
which pixels are repainted, and the repainting itself. On this 2-core AVX-512 CPU, the float graph against
its quantized copy on one channel of photos with per-pixel noise (scratch measurements; "worst" is the
largest mean change over the 4 scikit-image photos or the 25 validation photos at one amount of 0.1-0.9):

| Quantized | Calibration | Worst PSNR change | Graph speed-up (1136x1136 / 3x512x512 / 500 32x32) |
| --- | --- | --- | --- |
| every convolution | MinMax | -0.44 dB | 1.44x / 1.37x / 1.36x |
| all but head and tail | MinMax | -0.22 dB | 1.48x / 1.40x / 1.31x |
| levels 1 and below, both sides | MinMax | -0.053 dB (astronaut -0.17 at 0.7) | 1.25x / 1.34x / 1.24x |
| levels 1 and below, both sides | percentile | -0.017 dB, but -0.04 to -0.07 with 48 crops | |
| encoder side of levels 1 and below, 24 photo crops at 0.1-0.7 | percentile | +0.014 / -0.002 dB | |
| encoder side of levels 1 and below (this: 48 crops at 0.1-0.9, a share with structure) | percentile | -0.012 / +0.002 dB | see README, Speed |

The decoder's level-1 features go up into full resolution through a single transposed convolution, and
an 8-bit step there shows in the repainted values; encoder errors pass through the bottleneck and the
decoder's float convolutions first. Percentile calibration (`CALIBRATION_PERCENTILE` of each activation's
histogram) ignores the few extreme activations a crop can produce, which MinMax stretches every step for.

How: QDQ format (QuantizeLinear / DequantizeLinear pairs that ONNX Runtime fuses into integer kernels),
uint8 activations, int8 weights per output channel. Weights use 7 bits (`reduce_range`): CPUs without
AVX-512 VNNI multiply uint8 by int8 with VPMADDUBSW, whose 16-bit pair sums can saturate at full range;
7-bit weights cannot, so the graph gives the same answers on any x86 CPU, and on the validation photos
they cost nothing measurable (within 0.003 dB of 8-bit weights).

Calibration: `CALIBRATION_COUNT` crops of the training photos (`denoiser.photos.training_names`, never the
held-out validation ones), one channel each, with per-pixel salt-and-pepper at 0.1 / 0.3 / 0.5 / 0.7 / 0.9,
fixed seed, and synthetic structure (`denoiser.structure`) drawn into the same share of them as training
draws (`CALIBRATION_STRUCTURE_SHARE`). Calibrated on photos alone at 0.1-0.7, the graph moved the photo
benchmark's structure set at 0.9 up by 0.08 dB: white pages under dense noise reach activations those crops
never did. With 0.9 and the structure crops, the structure set moves by at most 0.03 dB and the photos by
less than 0.01 dB. Smooth synthetic images calibrated worse (-0.02 dB at 0.3-0.7 and -0.16 dB at 0.9), so the
graph is made where the photos are: `python train.py` writes it when it publishes (`denoiser.checkpoint`), and
`python -m denoiser.quantize [FOLDER]` writes it for a checkpoint folder by hand.

The file, `model.int8.onnx`, names in its metadata the checkpoint's hash (`onnx_backend.HASH_KEY`) and the
sha256 of the `model.onnx` it was quantized from (`FLOAT_KEY`). It is used only beside that very float
graph, once the float graph has been checked against the model's PyTorch code (`onnx_backend.onnx_core`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from denoiser.checkpoint import INT8_FILE, ONNX_FILE, publish_bytes, read_config
from denoiser.imaging import array_to_tensor
from denoiser.noise import salt_and_pepper
from denoiser import photos as photo_collection
from denoiser.photos import load_photos, photo_names, training_names
from denoiser.structure import draw_random_structure

FLOAT_KEY = "denoiser_float_graph_sha256"  # metadata_props key: the float graph this one was quantized from
CALIBRATION_COUNT = 48  # crops; 24 or 96 moved the benchmark cells as far (scratch runs); publishing takes about 8 s
CALIBRATION_SIZE = 192  # pixels a side, a multiple of every U-Net's padding multiple
CALIBRATION_AMOUNTS = (0.1, 0.3, 0.5, 0.7, 0.9)  # the range the app's slider and the benchmarks cover
# Share of crops with synthetic structure drawn in: `denoiser.training.TrainConfig.structure_share`, so the
# calibration sees lines, text and clipped regions as often as the network did in training.
CALIBRATION_STRUCTURE_SHARE = 0.3
CALIBRATION_SEED = 1
# What was measured (the table above): the grayscale U-Net. The Impulse U-Net's trunk would match
# `quantized_nodes` too, and a colour U-Net's would, but neither's int8 quality has been measured.
QUANTIZED_ARCHITECTURES = ("unet",)
CALIBRATION_PERCENTILE = 99.999  # onnxruntime's default, named so that a new default cannot move the graph
# Weight names of the encoder's convolutions, with their level (for a down conv, the level it leaves).
_ENCODER_WEIGHT = re.compile(r"model\.(down_blocks|downs)\.(\d+)\..*weight$")


def graph_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def quantized_nodes(proto) -> list[str]:
    """Names of the Conv nodes of `proto` (an onnx.ModelProto) that run in int8: the encoder's below full
    resolution, found by their weights' names (`model.down_blocks.1...`, `model.downs.1...`); none for a
    model without a U-Net trunk."""
    chosen = []
    for node in proto.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1:
            match = _ENCODER_WEIGHT.fullmatch(node.input[1])
            if match and int(match.group(2)) >= 1:
                chosen.append(node.name)
    return chosen


def _nodes_to_quantize(proto) -> list[str]:
    nodes = quantized_nodes(proto)
    if not nodes:
        raise ValueError("the graph has no U-Net encoder below full resolution to quantize")
    return nodes


def calibration_inputs(source: str | Path, *, count: int = CALIBRATION_COUNT,
                       size: int = CALIBRATION_SIZE, seed: int = CALIBRATION_SEED) -> list[np.ndarray]:
    """`count` noisy one-channel crops (1, 1, size, size) of training photos, float32 in [0, 1], a share of them
    with synthetic structure drawn in."""
    names = training_names(photo_names(source))
    step = max(1, len(names) // count)
    photos = load_photos(names[::step][:count], source)
    g, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    inputs = []
    for i, image in enumerate(photos.values()):
        channels = array_to_tensor(image)  # (C, H, W)
        if min(channels.shape[-2:]) < size:
            continue  # a few T91 images are smaller than a crop
        crop = channels[i % channels.shape[0], :size, :size]  # one channel, the photos' colours in turn
        if rng.random() < CALIBRATION_STRUCTURE_SHARE:
            crop, _ = draw_random_structure(crop[None], generator=rng)  # (size, size) -> (1, size, size)
            crop = crop[0]
        amount = CALIBRATION_AMOUNTS[i % len(CALIBRATION_AMOUNTS)]
        noisy = salt_and_pepper(crop[None, None], amount=amount, generator=g)  # (size, size) -> (1, 1, size, size)
        inputs.append(noisy.numpy())
    if not inputs:
        raise ValueError(f"{source} has no training photo of at least {size}x{size} pixels to calibrate on")
    return inputs


@contextlib.contextmanager
def _quiet_advice() -> Iterator[None]:
    """onnxruntime's quantizer advises, on the root logger, running its shape pre-processing first (a step for
    graphs of unknown shapes; ours are exported with every shape known but the dynamic axes), and its
    percentile calibration prints its progress: neither belongs in a publishing run's or a command's output."""
    advice = lambda record: not record.getMessage().startswith("Please consider")  # noqa: E731
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(advice)


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over a list of inputs."""

    def __init__(self, inputs: list[np.ndarray]) -> None:
        self._feeds = iter([{"image": x} for x in inputs])

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def quantize_graph(float_graph: bytes, inputs: list[np.ndarray]) -> bytes:
    """The int8 copy of a float ONNX graph of the U-Net core, its metadata naming the float graph's hash.

    Raises ValueError when the graph has no convolution to quantize (not a U-Net with a second level)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    proto = onnx.load_from_string(float_graph)
    nodes = _nodes_to_quantize(proto)
    source_meta = {p.key: p.value for p in proto.metadata_props}
    with tempfile.TemporaryDirectory(prefix="denoiser-int8-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(float_graph)
        with _quiet_advice():
            quantize_static(str(src), str(dst), _Batches(inputs), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["Conv"], nodes_to_quantize=nodes, per_channel=True,
                            reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.Percentile,
                            extra_options={"CalibPercentile": CALIBRATION_PERCENTILE})
        quantized = onnx.load(str(dst))
    del quantized.metadata_props[:]
    for key, value in {**source_meta, FLOAT_KEY: graph_sha256(float_graph)}.items():
        entry = quantized.metadata_props.add()
        entry.key, entry.value = key, value
    return quantized.SerializeToString()


def quantizable(folder: Path) -> bool:
    """Whether the checkpoint in `folder` is one this module makes int8 graphs for: a grayscale U-Net."""
    meta = read_config(folder)
    return meta["architecture"] in QUANTIZED_ARCHITECTURES and meta["config"].get("in_channels", 1) == 1


def write_int8_export(folder: str | Path, *, photos: str | Path | None = None,
                      count: int = CALIBRATION_COUNT) -> Path:
    """Quantize `folder/model.onnx` into `folder/model.int8.onnx` (written through a temporary file), calibrated
    on the training photos of `photos` (default `denoiser.photos.PHOTOS_ZIP`).

    Raises ValueError for a checkpoint that is not a U-Net (`QUANTIZED_ARCHITECTURES`), has no model.onnx,
    or whose photos cannot be read."""
    folder = Path(folder)
    if not quantizable(folder):
        meta = read_config(folder)
        raise ValueError(f"only grayscale {', '.join(QUANTIZED_ARCHITECTURES)} checkpoints are quantized, not "
                         f"{meta['architecture']} with {meta['config'].get('in_channels', 1)} input channels")
    if not (folder / ONNX_FILE).is_file():
        raise ValueError(f"{folder} has no {ONNX_FILE} to quantize")
    photos = photo_collection.PHOTOS_ZIP if photos is None else photos
    data = quantize_graph((folder / ONNX_FILE).read_bytes(), calibration_inputs(photos, count=count))
    return publish_bytes(data, folder / INT8_FILE)


def main(argv: list[str] | None = None) -> None:
    from denoiser.inference import DEFAULT_CHECKPOINT

    p = argparse.ArgumentParser(description="Write model.int8.onnx beside a checkpoint folder's model.onnx.")
    p.add_argument("folder", nargs="?", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--photos", type=Path, default=photo_collection.PHOTOS_ZIP,
                   help="the photo collection to calibrate on")
    args = p.parse_args(argv)
    try:
        print(write_int8_export(args.folder, photos=args.photos))
    except ValueError as err:
        p.error(str(err))


if __name__ == "__main__":
    main()
