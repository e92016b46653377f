"""The photo benchmark (denoiser.photo_benchmark, benchmarks/photos.py) with tiny images and a tiny U-Net."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_photos import write_collection

from denoiser import photo_benchmark as pb
from denoiser.architectures import ARCHITECTURES, build_model
from denoiser.checkpoint import is_checkpoint, save_checkpoint
from denoiser.methods import METHODS
from denoiser.structure import structure_set

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = {s.key: s for s in pb.scenarios()}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(build_model("unet", ARCHITECTURES["unet"].tiny), tmp_path_factory.mktemp("ckpt") / "tiny")


def mid_grey(shape=(64, 64, 3)) -> np.ndarray:
    return np.full(shape, 128, dtype=np.uint8)


def test_scenarios_cover_every_family_of_issue_9() -> None:
    keys = list(SCENARIOS)
    assert keys[0] == "identity"
    for a in pb.AMOUNTS:
        assert f"per-pixel-{a}" in keys and f"per-channel-{a}" in keys
    for q in (75, 90):
        assert f"jpeg{q}-0.1" in keys and f"jpeg{q}-0.3" in keys
    assert any(k.startswith("near-") for k in keys)
    assert len({s.key for s in pb.scenarios(quick=True)}) == 5


def test_identity_is_the_clean_image() -> None:
    clean = mid_grey()
    noisy = pb.corrupt(clean, SCENARIOS["identity"], seed=0)
    assert (noisy == clean).all() and noisy is not clean


@pytest.mark.parametrize("per_channel", [False, True])
def test_salt_and_pepper_hits_the_share_asked(per_channel: bool) -> None:
    clean = mid_grey((128, 128, 3))
    noisy = pb.corrupt(clean, SCENARIOS[f"per-{'channel' if per_channel else 'pixel'}-0.3"], seed=1)
    assert set(np.unique(noisy)) == {0, 128, 255}
    hit = noisy != 128  # (H, W, C)
    share = hit.mean() if per_channel else hit.any(axis=-1).mean()
    assert abs(share - 0.3) < 0.02
    whole_pixels = (hit.all(axis=-1) | ~hit.any(axis=-1)).all()
    assert whole_pixels != per_channel
    assert (pb.corrupt(clean, SCENARIOS["per-pixel-0.3"], seed=1) == pb.corrupt(clean, SCENARIOS["per-pixel-0.3"],
                                                                              seed=1)).all()


def test_near_extreme_impulses_lie_within_15_levels_of_the_extremes() -> None:
    noisy = pb.corrupt(mid_grey((128, 128, 3)), SCENARIOS["near-0.3"], seed=2)
    hit = noisy != 128
    assert abs(hit.any(axis=-1).mean() - 0.3) < 0.02
    values = noisy[hit]
    assert ((values <= 15) | (values >= 240)).all()
    assert ((values > 0) & (values < 255)).mean() > 0.8  # most are not exact 0/255: an exact-equality mask misses them


def test_jpeg_scenario_is_noise_then_jpeg() -> None:
    clean = np.ascontiguousarray(structure_set(size=64)[0].image)
    plain = pb.corrupt(clean, SCENARIOS["per-pixel-0.3"], seed=3)
    q90 = pb.corrupt(clean, SCENARIOS["jpeg90-0.3"], seed=3)
    q75 = pb.corrupt(clean, SCENARIOS["jpeg75-0.3"], seed=3)
    assert q90.shape == clean.shape and q90.dtype == np.uint8
    err = [np.abs(x.astype(int) - plain.astype(int)).mean() for x in (q90, q75)]
    assert 0 < err[0] < err[1]  # the same impulses, moved more by the stronger compression
    grey = pb.corrupt(clean[..., 0].copy(), SCENARIOS["jpeg75-0.3"], seed=3)
    assert grey.shape == clean.shape[:2]


def test_scores_of_a_perfect_and_a_damaged_output() -> None:
    s = structure_set(size=64)[0]
    image = pb.TestImage(pb.STRUCTURE, s.name, s.image, kind=s.kind, mask=s.mask)
    damaged = s.image.copy()
    lines = np.argwhere(s.mask)
    damaged[tuple(lines[: len(lines) // 2].T)] = 128  # half the structure pixels wrong
    damaged[tuple(lines[len(lines) // 2:][:5].T)] ^= 1  # five more off by one level: still correct
    perfect, bad = pb.score([s.image, damaged], image)
    assert perfect["psnr"] == 100.0 and perfect["identical"] == 1.0 and perfect["ssim"] == pytest.approx(1.0)
    assert perfect["structure_correct"] == perfect["structure_pixels"] == s.mask.sum()
    assert bad["structure_correct"] == s.mask.sum() - len(lines) // 2
    assert bad["identical"] == pytest.approx(1 - (len(lines) // 2 + 5) / s.mask.size)
    assert bad["psnr"] < 30 and bad["ssim"] < 1


def test_run_scores_every_method_in_every_case_and_repeats(tiny_checkpoint: Path) -> None:
    images = [pb.TestImage(pb.SKIMAGE, "grey", mid_grey((40, 48))), *pb.structure_images(size=48)[:3]]
    methods = {"tiny": METHODS["default"].build(source=tiny_checkpoint, device="cpu", backend="torch"),
               METHODS["median3"].label: METHODS["median3"].build(device="cpu")}
    quick = pb.scenarios(quick=True)
    records = pb.run(images, methods, quick, progress=False)
    assert len(records) == len(images) * len(quick) * 3
    again = pb.run(images, methods, quick, progress=False)
    assert [(r.psnr, r.structure_correct) for r in records] == [(r.psnr, r.structure_correct) for r in again]
    summary = pb.Summary(records)
    assert summary.methods() == [pb.NOISY_INPUT, "tiny", "3×3 median"]
    assert summary.identity[(pb.SKIMAGE, pb.NOISY_INPUT)] == (100.0, 100.0, 1.0)
    assert {k for k, _, _ in summary.structure} == {"lines"}
    markdown = pb.report_markdown(summary, images, quick, meta={
        "command": "test", "device": "cpu", "device_name": "cpu", "torch": "x", "threads": 1, "backends": "",
        "seed": 0, "seconds": 1.0}, learned=["tiny"], classic=("3×3 median",), notes=["a note"])
    for heading in ("## Time per image", "## Issue 9 targets", "## Amount 0", "## Impulses that moved",
                    "## Structure set", "### lines"):
        assert heading in markdown
    moved = {r.scenario: r.moved for r in records if r.set == pb.SKIMAGE and r.method == "tiny"}
    assert moved == {"identity": False, "per-pixel-0.3": False, "per-channel-0.5": False, "jpeg75-0.3": True,
                     "near-0.3": True}
    assert "| 0.3 then JPEG q75 | 1 / 1 |" in markdown  # the grey photo, in the scikit-image set's column
    assert "| Per-channel 0.5 |" in markdown and "- a note" in markdown


def test_targets_compare_against_the_right_baselines(tiny_checkpoint: Path) -> None:
    recs = [pb.Record(set=pb.VALIDATION, image="a", kind=None, scenario=scenario, method=method, psnr=value,
                      ssim=0.9, identical=0.0, seconds=0.1, megapixels=0.1)
            for scenario, values in {"per-channel-0.3": {"M": 35.0, "Adaptive median": 27.0, "3×3 median": 29.0},
                                     "jpeg75-0.1": {"M": 30.0, "Adaptive median": 20.0, "3×3 median": 28.0}}.items()
            for method, value in values.items()]
    found = {t.label: t for t in pb.targets(pb.Summary(recs), "M", classic=("Adaptive median", "3×3 median"))}
    over_adaptive = found["Validation photos, per-channel 0.3: gain over the adaptive median"]
    assert over_adaptive.value == 8.0 and over_adaptive.met  # against the adaptive median, not the better median
    jpeg = found["Validation photos, 0.1 then JPEG q75: gain over the best classic filter"]
    assert jpeg.value == 2.0 and jpeg.met is False
    assert found["Validation photos, per-channel 0.5: gain over the adaptive median"].value is None


def test_command_writes_tables_and_json(tmp_path: Path, tiny_checkpoint: Path) -> None:
    _, archive = write_collection(tmp_path)
    out = tmp_path / "results"
    results = pb.main(["--model", str(tiny_checkpoint), "--previous", str(tiny_checkpoint), "--photos", str(archive),
                       "--sets", "validation", "structure", "--quick", "--structure-size", "32", "--backend", "torch",
                       "--out", str(out)])
    saved = json.loads((out / "photos.json").read_text())
    assert saved["meta"]["images"][pb.VALIDATION] == results["meta"]["images"][pb.VALIDATION]
    assert len(saved["meta"]["images"][pb.VALIDATION]) == pb.QUICK_VALIDATION
    assert set(saved["targets"]) == {"Default model", "Previous default", "Impulse U-Net"}
    methods = {r["method"] for r in saved["records"]}
    assert methods == {"Noisy input", "Default model", "Previous default", "Impulse U-Net", "Adaptive median",
                       "3×3 median"}
    markdown = (out / "photos.md").read_text()
    assert "## Validation photos (3 images)" in markdown and "## Structure set (10 images)" in markdown
    pictures = sorted(p.name for p in (out / "photos-crops").iterdir())
    assert len(pictures) == 10 + 2  # every structure image at per-pixel 0.3; the first photo at JPEG and per-channel
    assert Image.open(out / "photos-crops" / pictures[0]).size == (7 * 32 + 6 * 4, 32)  # noisy, 5 methods, clean


@pytest.mark.parametrize("flag, column", [("--without-fill", "Default, no colour fill"),
                                          ("--without-strokes", "Default, no stroke rule")])
def test_the_default_without_one_of_its_rules_is_a_column_of_its_own(tmp_path: Path, tiny_checkpoint: Path,
                                                                     flag: str, column: str) -> None:
    results = pb.main(["--model", str(tiny_checkpoint), "--impulse", str(tmp_path / "none"), "--sets", "structure",
                       "--quick", "--structure-size", "32", "--backend", "torch", flag, "--no-crops",
                       "--out", str(tmp_path)])
    assert set(results["targets"]) == {"Default model", column}
    assert {r["method"] for r in results["records"]} >= {"Default model", column}


def test_missing_collection_and_checkpoint_are_notes(tmp_path: Path) -> None:
    results = pb.main(["--model", str(tmp_path / "none"), "--impulse", str(tmp_path / "none"), "--photos",
                       str(tmp_path / "none.zip"), "--sets", "validation", "structure", "--quick", "--structure-size",
                       "32", "--out", str(tmp_path)])
    notes = " ".join(results["notes"])
    assert "validation photos skipped" in notes and "Default model skipped" in notes
    assert "Impulse U-Net skipped" in notes
    assert results["targets"] == {}


def test_bad_previous_revision_is_a_clear_error(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout")
    with pytest.raises(SystemExit, match="error: git ls-tree"):
        pb.main(["--previous-rev", "no-such-revision", "--sets", "structure", "--out", str(tmp_path)])


def test_previous_checkpoint_from_a_git_revision(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout")
    folder = pb.checkpoint_from_git("HEAD", tmp_path / "prev")
    assert is_checkpoint(folder)
    committed = subprocess.run(["git", "-C", str(REPO), "show", "HEAD:checkpoints/default/config.json"],
                               capture_output=True, check=True).stdout
    assert (folder / "config.json").read_bytes() == committed


def test_module_entry_point_shows_help() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.photos", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0
    for option in ("--previous-rev", "--quick", "--backend", "--sets"):
        assert option in done.stdout


def test_two_runs_compared_cell_by_cell(tmp_path: Path, tiny_checkpoint: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import photo_diff

    def run(out: Path) -> Path:
        pb.main(["--model", str(tiny_checkpoint), "--impulse", str(tmp_path / "none"), "--sets", "structure",
                 "--quick", "--structure-size", "32", "--backend", "torch", "--no-crops", "--out", str(out)])
        return out / "photos.json"

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert photo_diff.main([str(first), str(second)]) == 0  # same seed, same model: no cell moves
    assert " 0 moved" in capsys.readouterr().out
    # One image of one cell 0.6 dB lower: its set's mean over 10 images moves by 0.06 dB, past the tolerance.
    saved = json.loads(second.read_text())
    record = next(r for r in saved["records"] if r["method"] == "Default model")
    record["psnr"] -= 0.6
    second.write_text(json.dumps(saved))
    assert photo_diff.main([str(first), str(second), "--method", "Default model"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(" 1 moved") and lines[1].startswith("-0.0600 dB")
    assert f"| {record['scenario']} | Default model" in lines[1]
    assert photo_diff.main([str(first), str(second), "--tolerance", "0.1"]) == 0
