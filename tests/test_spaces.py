"""The ZeroGPU path: app.py with the real `spaces` package from the package index, on a machine with no GPU.

`spaces` (Hugging Face's ZeroGPU client) is not a requirement of the app, so it is installed here, with pip,
into a temporary folder that only the app processes started by these tests see. What `spaces` does depends
on the environment (spaces/config.py, spaces/zero/decorator.py in 0.51.3):

* without `SPACES_ZERO_GPU=true`, as on a normal machine or a CPU Space, `spaces.GPU(...)` returns the
  function itself: the app must import, start and serve requests unchanged;
* with it (a ZeroGPU Space, which also sets `SPACES_ZERO_DEVICE_API_URL`), importing `spaces` patches torch so
  that CUDA looks present while no GPU is attached, and `spaces.GPU` returns a wrapper that asks the device
  API for a GPU on each call and runs the function in a forked worker that holds it. With no GPU and no
  device API here, that test stops at the request for a GPU: it checks that the handler's call reaches the
  wrapper, for the app's own `run_method`, with the duration the app asks for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from app_fixtures import REPO, app_process, free_port, photo

SPACES_VERSION = "0.51.3"
GPU_SECONDS = 30  # app.py's spaces.GPU(duration=...), documented in README's "GPU" section

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spaces_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only the `spaces` package, installed by pip (its requirements come with gradio)."""
    target = tmp_path_factory.mktemp("spaces")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                             "--target", str(target), f"spaces=={SPACES_VERSION}"],
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"pip could not install spaces=={SPACES_VERSION} (the package index must be reachable):\n"
                    f"{result.stdout}{result.stderr}")
    assert (target / "spaces" / "zero" / "decorator.py").is_file()
    return target


def app_env(spaces_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPACES_", "ZEROGPU_"))}
    return {**env, "PYTHONPATH": os.pathsep.join([str(spaces_dir), str(REPO)]), "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1", **extra}


def test_the_app_serves_a_request_with_spaces_installed_and_no_gpu(spaces_dir: Path, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    port = free_port()
    env = app_env(spaces_dir, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), CUDA_VISIBLE_DEVICES="")
    # -X importtime lists every module the process imports, so the log shows `spaces` was really loaded.
    with app_process("-X", "importtime", "app.py", env=env, ready="Running on local URL") as (_, lines):
        picture = tmp_path / "photo.png"
        Image.fromarray(photo(64, 48)).save(picture)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        *_, numbers, png = client.predict(handle_file(str(picture)), "default", 0.25, 0, False, api_name="/denoise")
    imported = [line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")]
    assert "spaces" in imported and "spaces.zero.decorator" in imported, "app.py did not import spaces"
    assert numbers["method"] == "default" and numbers["device"] == "cpu"
    assert (numbers["width"], numbers["height"]) == (64, 48)
    assert numbers["psnr_denoised"] > numbers["psnr_noisy"] + 10
    with Image.open(png) as denoised:
        assert denoised.size == (64, 48)


# Runs in its own process: ZeroGPU mode patches torch process-wide the moment `spaces` is imported.
ZERO_GPU_PROBE = '''
import json
import torch
import app  # imports spaces first, in ZeroGPU mode
import spaces.zero.client as zero_client
from spaces.zero.decorator import decorated_cache

class AskedForGPU(Exception):
    pass

calls = []
def schedule(*, task_id, request=None, duration=None, gpu_size=None, **_):
    calls.append({"task_id": task_id, "seconds": duration.total_seconds() if duration is not None else None})
    raise AskedForGPU  # no device API here: stop where a ZeroGPU Space would be lent a GPU

zero_client.schedule = schedule
error = None
picture = sorted(app.GALLERY_DIR.glob("*.png"))[0]  # the app reads uploads only from its own folders
try:
    app.denoise_image({"path": str(picture), "orig_name": picture.name}, "default", 0.25, 0, False)
except Exception as err:
    error = f"{type(err).__name__}: {err}"
inner = getattr(app.run_method, "__wrapped__", None)
print("PROBE " + json.dumps({
    "cuda_looks_available": torch.cuda.is_available(),
    "wrapper_marked": hasattr(app.run_method, "zerogpu"),
    "registered": decorated_cache.get(inner) is app.run_method,
    "inner": getattr(inner, "__qualname__", None), "inner_module": getattr(inner, "__module__", None),
    "calls": calls, "task_is_run_method": bool(calls) and calls[0]["task_id"] == id(inner), "error": error,
    "devices": {key: str(d.device) for key, d in app.DENOISERS.items()}, "unavailable": app.UNAVAILABLE,
}))
'''


def test_on_zero_gpu_the_handler_calls_the_spaces_wrapper_of_run_method(spaces_dir: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(ZERO_GPU_PROBE)
    # A closed local port as the device API: nothing may leave the machine.
    env = app_env(spaces_dir, SPACES_ZERO_GPU="true", SPACES_ZERO_DEVICE_API_URL=f"http://127.0.0.1:{free_port()}/",
                  CUDA_VISIBLE_DEVICES="", HOME=str(tmp_path))
    result = subprocess.run([sys.executable, str(probe)], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    probe_line = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    assert probe_line, log
    found = json.loads(probe_line[-1].removeprefix("PROBE "))
    assert found["cuda_looks_available"], found  # spaces' torch patch: models load "on CUDA" at start
    assert found["unavailable"] == {} and set(found["devices"].values()) <= {"cuda", "cuda:0"}, found
    assert found["wrapper_marked"] and found["registered"], found
    assert (found["inner"], found["inner_module"]) == ("run_method", "app"), found
    assert found["task_is_run_method"] and [c["seconds"] for c in found["calls"]] == [GPU_SECONDS], found
    assert "Something went wrong" in found["error"], found  # the visitor gets a message, not a traceback
