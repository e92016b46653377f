"""Load benchmark of the demo (app.py) through its public API, as real gradio_client callers see it.

Starts `python app.py` on 127.0.0.1 (or uses --url), then:
1. 20 concurrent callers, 200 /denoise calls in all, each with its own input (gallery image and seed),
   so no two responses are byte-identical. Prints successes, p50/p95/max latency and throughput.
2. With no other load, colour images of 0.25, 1 and 4 megapixels: the model time the app reports
   (`model_seconds`), the server's whole handler time (`total_seconds`), the app's own share (handler minus
   model: reading, noising, metrics, PNGs) and the client's round trip; and the app process's memory (RSS)
   when idle and its peak during each size's calls, sampled every 10 ms from /proc.

    python benchmarks/app_load.py                      # default model, 20 callers, 200 calls, then sizes
    python benchmarks/app_load.py --method median3 --callers 5 --calls 50
    python benchmarks/app_load.py --calls 0 --repeats 2   # the size table only
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
GALLERY = sorted((REPO / "assets" / "gallery").glob("*.png"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(*, timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """Run app.py in its own process on a free loopback port; returns it and its URL once it answers."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"app.py did not answer within {timeout:.0f} s")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def load_test(url: str, *, method: str, callers: int, calls: int, intensity: float) -> None:
    latencies: list[float] = []
    handler: list[float] = []  # the app's own time per request (numbers["total_seconds"])
    failures: list[str] = []
    lock = threading.Lock()
    local = threading.local()

    def one_call(i: int) -> None:
        if not hasattr(local, "client"):  # one client per caller thread, like separate users
            local.client = Client(url, verbose=False)
        image = GALLERY[i % len(GALLERY)]
        start = time.perf_counter()
        try:
            numbers = local.client.predict(handle_file(str(image)), method, intensity, i, False,
                                           api_name="/denoise")[4]
        except Exception as err:  # noqa: BLE001 - a benchmark counts failures instead of stopping
            with lock:
                failures.append(f"call {i}: {type(err).__name__}: {err}")
            return
        with lock:
            latencies.append(time.perf_counter() - start)
            handler.append(numbers["total_seconds"])

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=callers) as pool:
        list(pool.map(one_call, range(calls)))
    wall = time.perf_counter() - start
    print(f"load: {callers} concurrent callers, {calls} calls, method={method}, intensity={intensity}, "
          f"32x32 gallery images with distinct seeds")
    print(f"  succeeded {len(latencies)}/{calls}, wall {wall:.1f} s, {len(latencies) / wall:.2f} calls/s, "
          f"1-min load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after on {os.cpu_count()} CPUs")
    if latencies:
        print(f"  latency p50 {percentile(latencies, 50) * 1000:.0f} ms, p95 {percentile(latencies, 95) * 1000:.0f} ms,"
              f" max {max(latencies) * 1000:.0f} ms; the app's own handler time p50 "
              f"{percentile(handler, 50) * 1000:.0f} ms, p95 {percentile(handler, 95) * 1000:.0f} ms")
    for line in failures[:5]:
        print("  failure:", line)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


class PeakRss:
    """Samples a process's resident memory every 10 ms while in use; `.peak` is the highest, in MB."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def timing_split(url: str, *, method: str, sizes: list[int], repeats: int, pid: int | None) -> None:
    client = Client(url, verbose=False)
    folder = Path(tempfile.mkdtemp(prefix="app-load-"))
    rng = np.random.default_rng(0)
    print(f"model time vs request time, method={method}, median of {repeats} calls after one warm-up, no other "
          f"calls (1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    if pid is not None:
        print(f"  app process RSS when idle: {rss_mb(pid):.0f} MB")
    for size in sizes:
        # a smooth colour picture, so that the work resembles a photo rather than pure noise
        y, x = np.mgrid[0:size, 0:size] / size
        img = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=-1) * 0.8 + rng.uniform(0, 0.2, 3)
        path = folder / f"colour_{size}.png"
        Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(path)
        model, handler, own, round_trip = [], [], [], []
        idle = rss_mb(pid) if pid is not None else 0.0
        with PeakRss(pid) if pid is not None else contextlib.nullcontext() as peak:
            for i in range(repeats + 1):
                start = time.perf_counter()
                numbers = client.predict(handle_file(str(path)), method, 0.25, i, False, api_name="/denoise")[4]
                if i:  # the first call warms caches and is left out
                    round_trip.append(time.perf_counter() - start)
                    model.append(numbers["model_seconds"])
                    handler.append(numbers["total_seconds"])
                    own.append(numbers["total_seconds"] - numbers["model_seconds"])
        m, h, o, r = (statistics.median(v) * 1000 for v in (model, handler, own, round_trip))
        memory = f"; RSS {idle:.0f} MB before, peak {peak.peak:.0f} MB (+{peak.peak - idle:.0f})" if pid else ""
        print(f"  {size}x{size} colour ({size * size / 1e6:.2f} MP): model {m:.0f} ms, app handler {h:.0f} ms "
              f"(the app's own work {o:.0f} ms), client round trip {r:.0f} ms{memory}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running app; default: start app.py on a free loopback port")
    parser.add_argument("--method", default="default")
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--intensity", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048], help="square sides in pixels")
    args = parser.parse_args()
    proc, url = (None, args.url) if args.url else start_app()
    try:
        print(f"app at {url}")
        if args.calls:
            load_test(url, method=args.method, callers=args.callers, calls=args.calls, intensity=args.intensity)
        timing_split(url, method=args.method, sizes=args.sizes, repeats=args.repeats,
                     pid=proc.pid if proc is not None else None)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
