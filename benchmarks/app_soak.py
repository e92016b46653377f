"""Soak test of the demo (app.py): many calls, some of them 4-megapixel, while its disk and memory are watched.

Starts `python app.py` on 127.0.0.1 with its own GRADIO_TEMP_DIR, then sends --calls /denoise calls from
--callers threads: 32x32 gallery images with distinct seeds, 512x512 colour uploads, and every
--big-every-th call a 2048x2048 (4.2 MP) colour upload. Every --report calls it prints the app's folder
size on disk (uploads and results, `du`), its file count and the app process's resident memory (RSS).
Disk should level off at the cache cap (DENOISER_CACHE_MB) or the age limit, memory after warm-up.
At the end it stops the app with SIGTERM and checks that the app's folder is gone.

    python benchmarks/app_soak.py                              # 300 calls, 4 callers, cache cap 200 MB
    python benchmarks/app_soak.py --calls 600 --cache-mb 500
"""

from __future__ import annotations

import argparse
import os
import signal
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
sys.path.insert(0, str(REPO / "benchmarks"))
from app_load import free_port, rss_mb  # noqa: E402

GALLERY = sorted((REPO / "assets" / "gallery").glob("*.png"))


def folder_bytes(folder: Path) -> tuple[int, int]:
    """Bytes on disk and file count under `folder`."""
    total, count = 0, 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
                count += 1
            except FileNotFoundError:
                continue
    return total, count


def colour_picture(size: int, seed: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(seed)
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=-1) * 0.8 + rng.uniform(0, 0.2, 3)
    return (img.clip(0, 1) * 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--big-every", type=int, default=20, help="every N-th call is a 4.2 MP image")
    parser.add_argument("--report", type=int, default=30, help="print disk and memory every N calls")
    parser.add_argument("--cache-mb", type=float, default=200)
    parser.add_argument("--method", default="median3", help="method for the big images (the model: minutes)")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="app-soak-"))
    inputs = base / "inputs"
    inputs.mkdir()
    mid = [inputs / f"mid_{i}.png" for i in range(4)]
    big = [inputs / f"big_{i}.png" for i in range(2)]
    for i, path in enumerate(mid):
        Image.fromarray(colour_picture(512, i)).save(path)
    for i, path in enumerate(big):
        Image.fromarray(colour_picture(2048, 10 + i)).save(path)

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_TEMP_DIR": str(base), "DENOISER_CACHE_MB": str(args.cache_mb)}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("app.py did not start")
            time.sleep(0.5)
    (instance,) = base.glob("denoiser-app-*")
    print(f"app at {url}, folder {instance}, cache cap {args.cache_mb:.0f} MB, {args.calls} calls from "
          f"{args.callers} callers, every {args.big_every}th a 4.2 MP colour image ({args.method})")
    print(f"{'calls':>6} {'disk MB':>8} {'files':>6} {'RSS MB':>7} {'failed':>6} {'s':>6}")

    local = threading.local()
    failures: list[str] = []
    done = 0
    lock = threading.Lock()
    start = time.perf_counter()

    def report() -> None:
        size, count = folder_bytes(instance)
        print(f"{done:>6} {size / 2**20:>8.1f} {count:>6} {rss_mb(proc.pid):>7.0f} {len(failures):>6} "
              f"{time.perf_counter() - start:>6.0f}", flush=True)

    def one_call(i: int) -> None:
        nonlocal done
        if not hasattr(local, "client"):
            local.client = Client(url, verbose=False)
        if i % args.big_every == args.big_every - 1:
            image, method = big[i % len(big)], args.method
        elif i % 3 == 0:
            image, method = mid[i % len(mid)], "default"
        else:
            image, method = GALLERY[i % len(GALLERY)], "default"
        try:
            local.client.predict(handle_file(str(image)), method, 0.25, i, False, api_name="/denoise")
        except Exception as err:  # noqa: BLE001 - a soak counts failures instead of stopping
            with lock:
                failures.append(f"call {i}: {type(err).__name__}: {err}")
        with lock:
            done += 1
            if done % args.report == 0:
                report()

    report()
    with ThreadPoolExecutor(max_workers=args.callers) as pool:
        list(pool.map(one_call, range(args.calls)))
    for line in failures[:5]:
        print("failure:", line)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    print(f"after SIGTERM: app folder {'still there' if instance.exists() else 'removed'}; "
          f"left in {base}: {sorted(p.name for p in base.iterdir())}")


if __name__ == "__main__":
    main()
