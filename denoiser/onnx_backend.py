"""CPU inference through ONNX Runtime: export a model's core to ONNX, find a current export, run it.

Only the network's core is exported (`ModelDenoiser.core_method`, e.g. the U-Net's `forward_padded`),
with dynamic batch, height and width where the runner allows them. Padding, tiling and colour handling
stay in `denoiser.runners`, shared by both backends, so the ONNX session simply replaces the runner's
`core` callable.

Where the graph comes from, in order:

1. `model.onnx` in the checkpoint folder, written by `denoiser.checkpoint.copy_checkpoint` when
   `train.py` publishes. It is used only if the hash in its metadata (`HASH_KEY`, the sha256 of the
   checkpoint's architecture, config and weights, see `source_hash`) matches the folder's, and if it
   agrees with the model's PyTorch code on a small check input (the code may have changed since).
2. `<cache>/denoiser/onnx/<hash>.onnx`, `<cache>` being `$XDG_CACHE_HOME` or `~/.cache`.
3. A fresh export, checked against PyTorch on a second input shape, written to the cache (or kept in
   memory when the cache cannot be written). The checkpoint folder is never written at load time.

With `int8=True` (the backends "auto" and "onnx-int8"), the folder's `model.int8.onnx` (`denoiser.quantize`)
replaces the float graph of step 1 when it names that graph's sha256; a missing, stale or unreadable one
leaves the float graph in use, with a log line. The int8 core keeps the float one as `exact`: the runner
sends it the images read as clean or lightly hit (`denoiser.runners.ModelDenoiser.denoise_batch`).

A stale or unreadable file is skipped with a log line. When no graph can be had (onnxruntime or onnx
missing, an export that fails or disagrees with PyTorch) `OnnxUnavailable` says why; `load_denoiser`
falls back to PyTorch under `backend="auto"` and raises a ValueError under `backend="onnx"`.

The exporter is torch's TorchScript-based one (`dynamo=False`): in torch 2.14 it needs the `onnx` package
only and takes under a second, where the `torch.export` one also needs onnxscript and took 7 s on the
default model, for graphs that ran at the same speed. Sessions use as many intra-op threads as torch
(`torch.get_num_threads()`), so the two backends are compared on equal terms. Many small calls (a batch of
CIFAR-sized images) are spread over that many threads instead, each running a single-threaded session
(`OnnxCore.run_many`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn

from denoiser.checkpoint import INT8_FILE, ONNX_FILE, WEIGHTS_FILE, publish_bytes, read_config

log = logging.getLogger(__name__)

HASH_KEY = "denoiser_source_sha256"  # metadata_props key: what the graph was exported from
EXPORT_VERSION = 5  # part of the hash: bump when the export itself changes, so older files count as stale
OPSET = 18
TOLERANCE = 1e-4  # largest difference from PyTorch an export may show on its check input


class OnnxUnavailable(RuntimeError):
    """No ONNX graph can be used for this model; the message says why."""


def cache_dir() -> Path:
    """Where exports made at load time go: $XDG_CACHE_HOME/denoiser/onnx, else ~/.cache/denoiser/onnx."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "denoiser" / "onnx"


def source_hash(folder: str | Path) -> str:
    """sha256 of what an export depends on: the architecture and config (constants in the graph) and weights."""
    folder = Path(folder)
    meta = read_config(folder)
    digest = hashlib.sha256()
    spec = {"export_version": EXPORT_VERSION, "architecture": meta["architecture"], "config": meta["config"]}
    digest.update(json.dumps(spec, sort_keys=True).encode())
    with open(folder / WEIGHTS_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise OnnxUnavailable("onnxruntime is not installed (pip install onnxruntime)") from None
    return onnxruntime


class _Core(nn.Module):
    """The runner's core method of `model` as a module's forward, so that the export traces only it."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(x)


def export_bytes(runner: Any, digest: str) -> bytes:
    """The runner's core as an ONNX model with `digest` in its metadata, checked against PyTorch."""
    try:
        import onnx
    except ImportError:
        raise OnnxUnavailable("exporting to ONNX needs the onnx package (pip install onnx)") from None
    model = runner.model
    if next(model.parameters()).device.type != "cpu":
        raise OnnxUnavailable("export runs on the CPU only")
    example, check = runner.export_inputs()
    axes = {name: {d: f"{name}_{d}" for d in runner.dynamic_dims} for name in ("image", "denoised")}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter warns that it is deprecated in favour of dynamo=True; see the docstring.
            warnings.simplefilter("ignore")
            torch.onnx.export(_Core(model, runner.core_method).eval(), (example,), buffer, dynamo=False,
                              input_names=["image"], output_names=["denoised"], dynamic_axes=axes,
                              opset_version=OPSET)
    except Exception as err:  # any tracing or conversion failure means: this model does not export
        raise OnnxUnavailable(f"the model does not export to ONNX: {type(err).__name__}: {err}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = HASH_KEY, digest
    data = proto.SerializeToString()
    try:
        session = _session(data)
    except Exception as err:  # onnxruntime refusing a graph the exporter wrote: this model does not export
        raise OnnxUnavailable(f"onnxruntime cannot load the export: {str(err).splitlines()[0][:200]}") from None
    _check_against_torch(runner, session, check)
    return data


def _check_against_torch(runner: Any, session: Any, x: torch.Tensor) -> None:
    """A traced graph can bake shapes in as constants; a second input shape shows it."""
    with torch.inference_mode():
        expected = getattr(runner.model, runner.core_method)(x)
    got = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    diff = (got - expected).abs().max().item() if got.shape == expected.shape else float("inf")
    if not diff <= TOLERANCE:
        raise OnnxUnavailable(f"the ONNX export differs from PyTorch by {diff:.2g} on a {tuple(x.shape)} input")


def _session(model: str | Path | bytes, *, threads: int | None = None) -> Any:
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # Spin between the graph's operators, not after the run: idle threads that keep spinning once the
    # graph is done take the cores from the torch code that follows it (the colour fill). On a 512x512
    # colour photo the fill took 50 ms after a spinning run and 23 ms after this one; the graph's own time
    # did not change (0.265 s either way; scratch measurement, median of 7).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    # No memory pattern: with it, a run reserves one block planned for all of the graph's intermediate tensors.
    # A 1136x1136 tile (the default model's 1024 tiles and their margins) peaked 180 MB higher with it (505 MB
    # against 326 MB for the session's process), a 2048x2048 colour photo through the default model at 1.54 GB
    # against 1.37 GB for the whole process (/usr/bin/time, one call each); the time did not change (1136x1136,
    # 512x512 and 64 32x32 images, both orders, median of 7; scratch measurements).
    options.enable_mem_pattern = False
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def _open_current(path: Path, digest: str, runner: Any) -> Any | None:
    """A session on `path` when it holds the export of `digest` and still agrees with the model's code;
    None, with a log line, when it is stale or broken."""
    try:
        session = _session(path)
    except Exception as err:  # onnxruntime raises its own types for unreadable or invalid files
        log.warning("ignoring %s: onnxruntime cannot load it (%s)", path, str(err).splitlines()[0][:200])
        return None
    found = session.get_modelmeta().custom_metadata_map.get(HASH_KEY)
    if found != digest:
        log.warning("ignoring %s: it was exported from other weights or an older exporter (stale)", path)
        return None
    try:  # the hash covers weights and config, not code: a changed forward shows here, in milliseconds
        _check_against_torch(runner, session, runner.export_inputs()[1])
    except OnnxUnavailable as err:
        log.warning("ignoring %s (stale: the model's code changed since the export): %s", path, err)
        return None
    return session


def _write_cache(data: bytes, path: Path) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return True
    except OSError as err:
        log.warning("could not write the ONNX export to %s (%s); it is kept in memory only", path, err)
        return False


class OnnxCore:
    """Runs ONNX Runtime where the runner would call the model's core: torch in, torch out.

    One call runs on `session` with all its intra-op threads. Many small calls (`run_many`) run side by side
    instead, one per thread, each on a single-threaded session of the same graph: on a tiny image every
    convolution is too small to split across threads without them waiting on each other. The 32x32 colour
    batch of `benchmarks.onnx_speed` (1,500 channels) took 0.48 s as 64-image calls two at a time against
    0.56 s as 128-image calls on both threads (2-core CPU, median of 11, alternated in one process; scratch
    measurement); 64 ran as fast as 16 or 32 and faster than 128. A 512x512 channel keeps the shared
    session: three of them side by side took 0.30 s against 0.24 s.
    """

    # The images per call the runner should cut a batch of small images into; see run_many.
    call_pixels = 64 * 32 * 32

    def __init__(self, session: Any, *, origin: str, source: str | bytes, int8: bool = False) -> None:
        self.session, self.origin = session, origin  # origin: the file the graph came from, or "memory"
        self.int8 = int8  # the graph is `denoiser.quantize`'s int8 copy
        # For an int8 core, the float graph it was quantized from: the runner sends it the images read as clean.
        self.exact: OnnxCore | None = None
        self._source = source  # what a single-threaded session is opened from: a path or the graph's bytes
        self._threads = session.get_session_options().intra_op_num_threads
        self._parallel: tuple[Any, ThreadPoolExecutor] | None = None  # opened on first need (about 20 ms)
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.session, x)

    def run_many(self, parts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each part through the graph, in order: side by side when there are several small ones."""
        small = all(p.numel() <= self.call_pixels * p.shape[1] for p in parts)
        if len(parts) < 2 or self._threads < 2 or not small:
            return [self(p) for p in parts]
        single, pool = self._single_threaded()
        return list(pool.map(lambda p: self._run(single, p), parts))

    def _single_threaded(self) -> tuple[Any, ThreadPoolExecutor]:
        with self._lock:  # two requests of the app may get here at once; open one session, not two
            if self._parallel is None:
                pool = ThreadPoolExecutor(self._threads, thread_name_prefix="onnx-core")
                self._parallel = (_session(self._source, threads=1), pool)
            return self._parallel

    @staticmethod
    def _run(session: Any, x: torch.Tensor) -> torch.Tensor:
        out = session.run(None, {"image": x.detach().to("cpu", torch.float32).contiguous().numpy()})[0]
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        return f"OnnxCore(origin={self.origin!r}, int8={self.int8})"


def _open_int8(folder: Path, digest: str) -> OnnxCore | None:
    """The folder's model.int8.onnx when it was quantized from the folder's (current) model.onnx; None, with
    a log line, when it is missing, stale or broken."""
    from denoiser.quantize import FLOAT_KEY, graph_sha256

    path = folder / INT8_FILE
    if not path.is_file():
        log.info("%s has no %s: running the float graph", folder, INT8_FILE)
        return None
    try:
        session = _session(path)
    except Exception as err:  # onnxruntime raises its own types for unreadable or invalid files
        log.warning("ignoring %s: onnxruntime cannot load it (%s)", path, str(err).splitlines()[0][:200])
        return None
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get(HASH_KEY) != digest or meta.get(FLOAT_KEY) != graph_sha256((folder / ONNX_FILE).read_bytes()):
        log.warning("ignoring %s: it was not quantized from this folder's %s (stale); running the float graph "
                    "(python -m denoiser.quantize %s writes a new one)", path, ONNX_FILE, folder)
        return None
    return OnnxCore(session, origin=str(path), source=str(path), int8=True)


def onnx_core(runner: Any, folder: str | Path, *, int8: bool = False) -> OnnxCore:
    """The ONNX Runtime replacement for `runner.core`: the checkpoint's model.onnx, the cache, or a fresh export.

    With `int8`, the folder's model.int8.onnx instead when it was quantized from that model.onnx and the
    model.onnx is current (so the int8 graph too follows the model's code); else the float graph as above."""
    _onnxruntime()
    folder = Path(folder)
    digest = source_hash(folder)
    cached = cache_dir() / f"{digest}.onnx"
    for path in (folder / ONNX_FILE, cached):
        if path.is_file() and (session := _open_current(path, digest, runner)) is not None:
            core = OnnxCore(session, origin=str(path), source=str(path))
            if int8 and path == folder / ONNX_FILE and (quantized := _open_int8(folder, digest)) is not None:
                quantized.exact = core
                return quantized
            return core
    if int8:
        log.info("%s has no current %s: running the float graph", folder, ONNX_FILE)
    data = export_bytes(runner, digest)
    written = _write_cache(data, cached)
    log.info("exported %s to ONNX%s", folder, f" ({cached})" if written else "")
    return OnnxCore(_session(data), origin=str(cached) if written else "memory", source=data)


def write_export(folder: str | Path) -> Path:
    """Export the checkpoint in `folder` to `folder/model.onnx` (publishing, not loading, writes here)."""
    from denoiser.architectures import wrap_model  # imported here: checkpoint.py calls this at publish time
    from denoiser.checkpoint import load_model

    folder = Path(folder)
    runner = wrap_model(load_model(folder, device="cpu"))
    return publish_bytes(export_bytes(runner, source_hash(folder)), folder / ONNX_FILE)
