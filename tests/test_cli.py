"""The `denoise` command: the real console script of a real `pip install`, then its options in-process.

The install goes into a fresh virtual environment that sees this environment's packages through a .pth
file (so torch is not copied), from a copy of the repository's files, and runs from a folder outside the
repository: what it finds, it found in the installed package.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, psnr_u8
from PIL import Image

from denoiser.cli import main

NOISE = 0.3


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


# ---------------------------------------------------------------------------------------------------------
# The installed console script


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install .` (not editable) of a copy of the repository; returns the environment's bin folder."""
    root = tmp_path_factory.mktemp("install")
    clone = root / "clone"
    clone.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (clone / name).write_bytes((ROOT / name).read_bytes())
    for folder in ("denoiser", "checkpoints"):
        shutil.copytree(ROOT / folder, clone / folder, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    env = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([env / "bin" / "python", "-c", where], capture_output=True, text=True,
                               check=True).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_outer_site_packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    done = subprocess.run([env / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--quiet", str(clone)], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
    return env / "bin"


def _script(bin_dir: Path, *argv: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what was installed
    return subprocess.run([str(bin_dir / "denoise"), *map(str, argv)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_installed_package_ships_the_checkpoints(installed: Path, tmp_path: Path) -> None:
    code = ("import numpy as np, denoiser, denoiser.inference as i\n"
            "print(denoiser.__file__); print(i.DEFAULT_CHECKPOINT); print(i.ARTICLE_CHECKPOINT)\n"
            "x = np.full((24, 24), 0.5, np.float32); x[::3, ::2] = 1.0  # a flat grey with salt on it\n"
            "print(np.abs(denoiser.load_denoiser(device='cpu').denoise(x) - 0.5).max())")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([installed / "python", "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    package, default, article, worst_error = done.stdout.splitlines()
    site = installed.parent / "lib"
    assert Path(package).is_relative_to(site) and Path(default).is_relative_to(site)
    for shipped, folder in ((ROOT / "checkpoints" / "default", default), (ROOT / "checkpoints" / "article", article)):
        # Every file, sub-folders (a colour/ network) included.
        files = sorted(str(p.relative_to(shipped)) for p in shipped.rglob("*") if p.is_file() and
                       not any(part.startswith(".") for part in p.relative_to(shipped).parts))
        assert sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file()) == files
        assert all(_digest(Path(folder) / name) == _digest(shipped / name) for name in files)
    assert float(worst_error) < 0.02  # every grain of salt repainted grey by the shipped default model


def test_noise_then_denoise_one_file_round_trip(installed: Path, tmp_path: Path, photo: np.ndarray) -> None:
    clean = photo
    Image.fromarray(clean).save(tmp_path / "photo.png")
    before = _digest(tmp_path / "photo.png")

    made = _script(installed, "photo.png", "--add-noise", NOISE, "--seed", 3, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == ["photo-noisy.png"]
    noisy = _pixels(tmp_path / "photo-noisy.png")
    assert noisy.shape == clean.shape
    hit = ((noisy == 0) | (noisy == 255)).all(axis=2).mean()
    assert hit == pytest.approx(NOISE, abs=0.02)

    done = _script(installed, "photo-noisy.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["photo-noisy-denoised.png"]
    assert "Default model on cpu" in done.stderr and "1/1" in done.stderr  # the progress bar
    with Image.open(tmp_path / "photo-noisy-denoised.png") as image:
        assert image.format == "PNG" and image.mode == "RGB"
        denoised = np.asarray(image)
    assert psnr_u8(noisy, clean) < 12 and psnr_u8(denoised, clean) > 33  # measured: 10.2 dB and 35.4 dB
    assert _digest(tmp_path / "photo.png") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo-noisy-denoised.png", "photo-noisy.png", "photo.png"]


@pytest.fixture
def folder(tmp_path: Path, photo: np.ndarray) -> Path:
    """Noisy images of every kind the reader keeps apart, plus one file that is not an image."""
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    rgb = photo
    hit, white = rng.random(rgb.shape[:2]) < NOISE, rng.random(rgb.shape[:2]) < 0.5
    noisy = np.where(hit[..., None], np.where(white, 255, 0)[..., None], rgb)
    Image.fromarray(noisy.astype(np.uint8)).save(src / "colour.png")
    Image.fromarray(noisy[..., 0].astype(np.uint8)).save(src / "gray.png")
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
    Image.fromarray(np.dstack([noisy, alpha]).astype(np.uint8)).save(src / "transparent.png")
    Image.fromarray(rgb).save(src / "photo.jpg", quality=90)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (src / "notes.txt").write_text("not picked up: not an image extension")
    return src


def test_folder_to_out_folder_reports_and_skips_a_bad_file(installed: Path, folder: Path,
                                                           photo: np.ndarray) -> None:
    inputs = {p.name: _digest(p) for p in folder.iterdir()}
    done = _script(installed, "in/", "--out", "clean", cwd=folder.parent)
    assert done.returncode == 1
    assert sorted(done.stdout.split()) == [f"clean/{n}.png" for n in ("colour", "gray", "photo", "transparent")]
    assert "denoised 4 of 5" in done.stderr
    assert "in/broken.png: This file is not an image that can be read" in done.stderr
    out = folder.parent / "clean"
    assert sorted(p.name for p in out.iterdir()) == ["colour.png", "gray.png", "photo.png", "transparent.png"]
    modes = {p.stem: Image.open(p).mode for p in out.iterdir()}
    assert modes == {"colour": "RGB", "gray": "L", "photo": "RGB", "transparent": "RGBA"}
    transparent_in, transparent_out = _pixels(folder / "transparent.png"), _pixels(out / "transparent.png")
    assert np.array_equal(transparent_out[..., 3], transparent_in[..., 3])  # alpha untouched
    assert np.array_equal(_pixels(out / "transparent.png")[..., :3], _pixels(out / "colour.png"))
    assert psnr_u8(_pixels(out / "colour.png"), photo) > 33
    assert {p.name: _digest(p) for p in folder.iterdir()} == inputs


def test_quoted_glob_through_python_m(installed: Path, folder: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([installed / "python", "-m", "denoiser", "in/*.png", "--method", "median3",
                           "--suffix=-m3"], cwd=folder.parent, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # broken.png matches the pattern too
    assert sorted(done.stdout.split()) == [f"in/{n}-m3.png" for n in ("colour", "gray", "transparent")]
    assert "3×3 median on cpu" in done.stderr and "in/broken.png" in done.stderr
    assert not (folder / "photo-m3.png").exists()


# ---------------------------------------------------------------------------------------------------------
# Options, in-process (the same `main` the script calls)


def _files(folder: Path) -> dict[str, str]:
    return {p.name: _digest(p) for p in sorted(folder.iterdir())}


def test_inputs_are_never_overwritten_and_outputs_only_when_asked(folder: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    gray = str(folder / "gray.png")
    before = _files(folder)
    assert main([gray, "--suffix", "", "--method", "median3"]) == 1
    assert "is an input; it is only overwritten with --in-place" in capsys.readouterr().err
    assert main([str(folder), "--out", str(folder), "--method", "median3"]) == 1  # same folder, same names
    assert "colour.png is an input" in capsys.readouterr().err
    assert _files(folder) == {**before, "photo.png": _digest(folder / "photo.png")}  # photo.jpg -> photo.png

    out = folder.parent / "out"
    assert main([gray, "--out", str(out), "--method", "median3"]) == 0
    first = _digest(out / "gray.png")
    assert main([gray, "--out", str(out), "--method", "median5"]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert _digest(out / "gray.png") == first
    assert main([gray, "--out", str(out), "--method", "median5", "--overwrite"]) == 0
    assert _digest(out / "gray.png") != first


def test_in_place_replaces_the_input_in_its_own_format(folder: Path) -> None:
    jpeg = folder / "photo.jpg"
    noisy_jpeg = folder / "noisy.jpg"
    assert main([str(jpeg), "--add-noise", "0.2", "--out", str(noisy_jpeg)]) == 0
    before = _pixels(noisy_jpeg)
    assert main([str(noisy_jpeg), "--in-place", "--method", "median3"]) == 0
    with Image.open(noisy_jpeg) as image:
        assert image.format == "JPEG" and image.size == (before.shape[1], before.shape[0])
        assert not np.array_equal(np.asarray(image), before)
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # no temporary file left behind


def test_a_noisy_jpeg_is_said_to_go_to_the_impulse_unet(folder: Path, capsys: pytest.CaptureFixture) -> None:
    noisy_png, noisy_jpeg = folder / "lossless.png", folder / "noisy.jpg"
    assert main([str(folder / "photo.jpg"), "--add-noise", "0.2", "--out", str(noisy_png)]) == 0
    Image.open(noisy_png).save(noisy_jpeg, quality=85)
    capsys.readouterr()
    assert main([str(noisy_jpeg), str(noisy_png)]) == 0
    err = capsys.readouterr().err
    assert f"{noisy_jpeg}: its impulses moved" in err and f"{noisy_png}: its impulses moved" not in err
    assert main([str(noisy_jpeg), "--method", "median3", "--overwrite"]) == 0
    assert "its impulses moved" not in capsys.readouterr().err  # only the default model has the route


def test_per_channel_noise_round_trip(tmp_path: Path, photo: np.ndarray) -> None:
    Image.fromarray(photo).save(tmp_path / "photo.png")
    assert main([str(tmp_path / "photo.png"), "--add-noise", "0.3", "--per-channel", "--seed", "0"]) == 0
    noisy = _pixels(tmp_path / "photo-noisy.png")
    hit = (noisy == 0) | (noisy == 255)
    assert hit.mean() == pytest.approx(0.3, abs=0.02) and hit.all(axis=2).mean() < 0.05  # values, not pixels
    assert main([str(tmp_path / "photo-noisy.png")]) == 0
    # The default model's colour fill repairs the hit values from the pixel's other channels: measured 42.0 dB
    # (35.6 dB without it, tests/test_colour.py).
    assert psnr_u8(_pixels(tmp_path / "photo-noisy-denoised.png"), photo) > 41


def test_format_keep_out_file_and_16_bit(folder: Path, tmp_path: Path) -> None:
    assert main([str(folder / "photo.jpg"), "--format", "keep", "--method", "median3"]) == 0
    assert Image.open(folder / "photo-denoised.jpg").format == "JPEG"
    colour = str(folder / "colour.png")
    assert main([colour, "--method", "median3"]) == 0
    assert main([colour, "--out", str(tmp_path / "x" / "result.webp"), "--method", "median3"]) == 0
    with Image.open(tmp_path / "x" / "result.webp") as image:  # lossless WebP: exactly the PNG's pixels
        assert image.format == "WEBP"
        assert np.array_equal(np.asarray(image), _pixels(folder / "colour-denoised.png"))

    deep = np.linspace(1000, 64000, 30 * 40).reshape(30, 40).astype(np.uint16)
    deep[::4, ::3] = 65535  # impulses
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I")
    assert main([str(tmp_path / "deep.png"), "--method", "median3"]) == 0
    with Image.open(tmp_path / "deep-denoised.png") as image:
        out = np.asarray(image).astype(np.int64)
    assert out.max() > 255 and out.max() < 65535  # 16 bits kept, impulses gone
    assert len(np.unique(out)) > 256


def test_exif_rotation_is_applied(tmp_path: Path, photo: np.ndarray) -> None:
    image = Image.fromarray(photo)  # 160 wide, 128 high
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    image.save(tmp_path / "phone.jpg", exif=exif.tobytes())
    assert main([str(tmp_path / "phone.jpg"), "--method", "median3"]) == 0
    assert Image.open(tmp_path / "phone-denoised.png").size == (128, 160)


def test_write_failure_leaves_no_file(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    def fail_midway(self: Image.Image, fp, *args, **kwargs) -> None:
        fp.write(b"half an image")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", fail_midway)
    assert main([str(folder / "gray.png"), "--method", "median3"]) == 1
    assert "disk full" in capsys.readouterr().err
    assert not (folder / "gray-denoised.png").exists()
    assert not any(p.name.startswith(".") for p in folder.iterdir())


@pytest.mark.parametrize("argv, message", [
    (["--add-noise", "1.5"], "--add-noise must be between 0 and 1"),
    (["--per-channel"], "--per-channel is an option of --add-noise"),
    (["--in-place", "--out", "x"], "--in-place writes over each input"),
    (["--method", "median3", "--checkpoint", "x"], "--checkpoint is for the learned methods"),
    (["--method", "sharpen"], "invalid choice: 'sharpen'"),
    (["--device", "toaster"], "is not a torch device"),
    (["--checkpoint", "no/such/folder"], "neither a checkpoint folder"),
])
def test_usage_errors_exit_2(folder: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(folder / "gray.png"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (folder / "gray-denoised.png").exists()


def test_out_file_takes_one_input_only(folder: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(folder), "--out", str(folder.parent / "one.png")])
    assert exit_info.value.code == 2 and "give a folder" in capsys.readouterr().err


def test_missing_inputs_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "nope.png"), str(tmp_path / "*.tif"), str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "no files match" in err and "no images in this folder" in err
