"""Training on photos too: crops of real files, the real-world degradations, and the detector's own loss."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train
from conftest import smooth_image
from denoiser.crops import PhotoCrops
from denoiser.models.impulse import DETECT_TOLERANCE, detection_target
from denoiser.photos import validation_names
from denoiser.training import TrainConfig, step_images, training_loss

TINY_IMPULSE = ["--arch", "impulse", "--widths", "8", "16", "--blocks", "1", "1"]


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bsd232/ and t91/ with small photo-like images, as in the shipped photos zip."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for folder, n in (("bsd232", 30), ("t91", 10)):
        (root / folder).mkdir()
        for i in range(n):
            Image.fromarray(smooth_image(rng, size=72)).save(root / folder / f"{i:03d}.png")
    return root


def test_crops_have_the_size_asked_for_and_repeat_with_the_seed(photo_folder: Path) -> None:
    photos = [np.asarray(Image.open(p)) for p in sorted(photo_folder.rglob("*.png"))]
    crops = PhotoCrops(photos, size=32, structure_share=0.5)
    a, b = crops.batch(6, rng=np.random.default_rng(1)), crops.batch(6, rng=np.random.default_rng(1))
    assert a.shape == (6, 3, 32, 32) and a.dtype == torch.uint8 and torch.equal(a, b)
    with pytest.raises(ValueError, match="smaller than"):
        PhotoCrops(photos, size=80)


def test_page_crops_draw_structure_on_one_flat_colour(photo_folder: Path) -> None:
    photos = [np.asarray(Image.open(p)) for p in sorted(photo_folder.rglob("*.png"))]
    pages = PhotoCrops(photos, size=32, structure_share=1.0, page_share=1.0).batch(40, rng=np.random.default_rng(0))
    # A page holds its background colour and the drawn structure: few distinct colours, unlike a photo crop.
    colours = [len(torch.unique(crop.reshape(3, -1), dim=1)) for crop in pages]  # (3, S, S) -> (3, S*S)
    assert max(colours) <= 3  # the page and at most two stroke colours
    white = [crop for crop in pages if (crop == 255).all(dim=0).float().mean() > 0.5]
    assert white and any((crop == 0).all(dim=0).any() for crop in white)  # black detail on white paper occurs
    with pytest.raises(ValueError, match="page_share"):
        PhotoCrops(photos, size=32, page_share=1.5)


def test_training_loss_adds_the_detection_loss_for_models_that_detect() -> None:
    clean = torch.full((2, 3, 8, 8), 0.5)
    noisy = clean.clone()
    noisy[:, :, 0, 0] = 1.0
    target = detection_target(noisy, clean)
    assert target.sum() == 6 and DETECT_TOLERANCE < 0.1
    cfg = TrainConfig(loss="mse", detect_weight=2.0)
    confident = torch.where(target > 0, 20.0, -20.0)
    plain = training_loss(clean, noisy, clean, cfg=cfg)
    right = training_loss((clean, confident), noisy, clean, cfg=cfg)  # right values, right detection
    wrong = training_loss((clean, -confident), noisy, clean, cfg=cfg)  # right values, detection inverted
    bad_values = training_loss((torch.zeros_like(clean), confident), noisy, clean, cfg=cfg)
    assert plain == 0 and right < 1e-6 and wrong > 10 and bad_values > 1e-3


def test_photo_steps_follow_the_share_and_survive_a_resume(photo_folder: Path) -> None:
    photos = [np.asarray(Image.open(p)) for p in sorted(photo_folder.rglob("*.png"))]
    crops = PhotoCrops(photos, size=32, structure_share=0.0)
    cfg = TrainConfig(photo_share=0.5, photo_batch=3)
    cifar = torch.zeros(10, 3, 32, 32, dtype=torch.uint8)
    rt = type("Rt", (), {"rank": 0})()
    kinds = [len(step_images(cfg, rt, idx=torch.arange(5), train_images=cifar, crops=crops, epoch=0, step=s))
             for s in range(200)]
    assert 0.35 < kinds.count(3) / 200 < 0.65
    again = step_images(cfg, rt, idx=torch.arange(5), train_images=cifar, crops=crops, epoch=0, step=17)
    assert len(again) == kinds[17]  # the same step draws the same kind of batch after a resume


def test_impulse_recipe_trains_on_cifar_and_photos_and_never_on_held_out_photos(
        image_folder: Path, photo_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["--recipe", "impulse", "--data", str(image_folder), "--photos", str(photo_folder), "--out", str(out),
            "--batch-size", "8", "--epochs", "2", "--no-publish", *TINY_IMPULSE]
    assert train.main(args) == 0
    log = capsys.readouterr().out
    held_out = len(validation_names(sorted(p.relative_to(photo_folder).as_posix() for p in photo_folder.rglob("*.png"))))
    assert f"photos: {40 - held_out} training photos" in log
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2 and all(np.isfinite([h["train_loss"], h["val_loss"]]).all() for h in history)
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["architecture"] == "impulse" and saved["degradation"]["jpeg_share"] > 0
    assert saved["photos"] == str(photo_folder.resolve())


def test_soft_mask_term_charges_the_detector_for_what_a_miss_costs() -> None:
    clean = torch.full((1, 3, 8, 8), 0.5)
    noisy = clean.clone()
    noisy[:, :, 0, 0] = 1.0  # a big impulse
    noisy[:, :, 4, 4] = 0.55  # a small change, below nothing the eye would miss
    cfg = TrainConfig(loss="mse", detect_weight=0.0, soft_mask_weight=1.0)
    logits = torch.full_like(clean, -20.0)
    missed_big = logits.clone()
    missed_big[:, :, 4, 4] = 20.0
    missed_small = logits.clone()
    missed_small[:, :, 0, 0] = 20.0
    # Teacher forcing repaints both either way; only the soft-mask term tells the two misses apart.
    assert training_loss((clean, missed_big), noisy, clean, cfg=cfg) > 10 * training_loss(
        (clean, missed_small), noisy, clean, cfg=cfg)
    without = TrainConfig(loss="mse", detect_weight=0.0)
    assert training_loss((clean, missed_big), noisy, clean, cfg=without) == 0


def test_init_from_copies_matching_tensors_and_says_which_were_not(
        image_folder: Path, photo_folder: Path, tmp_path: Path, capsys) -> None:
    from denoiser.checkpoint import load_model

    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--data", str(image_folder), "--photos", str(photo_folder), "--batch-size", "8", "--no-publish"]
    assert train.main(["--recipe", "impulse", *common, "--epochs", "1", "--out", str(first), *TINY_IMPULSE]) == 0
    # A gray net of the same widths shares every tensor but the first and last convolutions' weights.
    args = ["--recipe", "impulse-gray", *common, "--epochs", "1", "--lr", "1e-9", "--out", str(second),
            "--init-from", str(first / "checkpoint"), *TINY_IMPULSE]
    assert train.main(args) == 0
    assert "kept their fresh values (head.weight, tail.bias, tail.weight)" in capsys.readouterr().out
    a, b = load_model(first / "checkpoint").state_dict(), load_model(second / "checkpoint").state_dict()
    assert torch.allclose(a["down_blocks.0.0.conv1.weight"], b["down_blocks.0.0.conv1.weight"], atol=1e-6)
    assert train.main(["--recipe", "impulse", *common, "--epochs", "1", "--out", str(tmp_path / "third"),
                       "--init-from", str(tmp_path)]) == 2  # not a checkpoint: a clear error, no run


def test_publish_pair_assembles_detector_and_filler_into_one_checkpoint(tmp_path: Path) -> None:
    from denoiser.architectures import ARCHITECTURES, build_model
    from denoiser.checkpoint import load_model, read_card, save_checkpoint

    torch.manual_seed(0)
    detector = save_checkpoint(build_model("impulse", ARCHITECTURES["impulse"].tiny), tmp_path / "detector")
    filler = save_checkpoint(build_model("unet", ARCHITECTURES["unet"].tiny), tmp_path / "filler")
    train.publish_pair(detector, filler=filler, out=tmp_path / "pair")
    pair = load_model(tmp_path / "pair")
    assert pair.architecture == "detect_fill" and (tmp_path / "pair" / "model.onnx").is_file()
    for part, source in ((pair.detector, detector), (pair.filler, filler)):
        expected = load_model(source).state_dict()
        assert all(torch.allclose(v, expected[k], atol=1e-3) for k, v in part.state_dict().items())  # fp16 copy
    assert "detector: `detector`" in read_card(tmp_path / "pair").text


def test_a_colour_unet_started_from_a_gray_one_repaints_a_gray_image_as_the_gray_one_does(tmp_path: Path) -> None:
    from denoiser.architectures import ARCHITECTURES, build_model
    from denoiser.checkpoint import save_checkpoint
    from denoiser.training import init_weights

    torch.manual_seed(0)
    tiny = ARCHITECTURES["unet"].tiny
    gray = build_model("unet", tiny)
    for p in gray.parameters():  # the tail starts at zero; random tensors make every path count
        torch.nn.init.normal_(p, std=0.2)
    source = save_checkpoint(gray, tmp_path / "gray")
    colour = build_model("unet", {**tiny, "in_channels": 3})
    assert init_weights(colour, str(source))[1] == []  # every tensor came from the gray network
    x = torch.rand(1, 1, 24, 40)
    x[..., :8, :12] = 1.0  # a clipped region, kept
    x = torch.where(torch.rand_like(x) < 0.3, torch.randint(0, 2, x.shape).float(), x)  # impulses, repainted
    with torch.inference_mode():
        expected = gray(x).expand(1, 3, 24, 40)
        assert torch.allclose(colour(x.expand(1, 3, 24, 40)), expected, atol=1e-5)
        # On a colour image each channel has its own first guess, so the channels differ.
        tinted = x.expand(1, 3, 24, 40) * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)
        out = colour(tinted)
        assert not torch.allclose(out[:, 0], out[:, 2], atol=1e-3)
        with pytest.raises(ValueError, match="grayscale U-Net"):
            colour.colour_tensors_from_gray(colour.state_dict())


def test_the_moved_recipe_trains_a_refiner_on_the_frozen_pair_and_a_new_pair_keeps_it(
        image_folder: Path, photo_folder: Path, tmp_path: Path, capsys) -> None:
    from denoiser.architectures import ARCHITECTURES, build_model
    from denoiser.checkpoint import load_model, read_card, save_checkpoint

    torch.manual_seed(0)
    tiny = {k: v for k, v in ARCHITECTURES["detect_fill"].tiny.items() if k != "refiner"}
    start = save_checkpoint(build_model("detect_fill", tiny), tmp_path / "pair")
    published = tmp_path / "published"
    common = ["--recipe", "moved", "--data", str(image_folder), "--photos", str(photo_folder), "--batch-size", "8",
              "--epochs", "1", "--publish", str(published)]
    # The pair's own (tiny) config comes from --init-from; the recipe adds its refiner, and only that trains.
    assert train.main([*common, "--out", str(tmp_path / "run"), "--init-from", str(start)]) == 0
    assert "trained, the rest frozen)" in capsys.readouterr().out
    before, after = load_model(start), load_model(published)
    assert after.refiner is not None and "stayed frozen" in read_card(published).text
    for name, value in before.state_dict().items():
        assert torch.allclose(value, after.state_dict()[name], atol=1e-3), name  # the pair, untouched (fp16 copy)
    assert any(v.abs().sum() > 0 for v in after.refiner.tail.state_dict().values())  # the refiner learned
    # A new detector or filler published beside it keeps the refiner, and says it needs retraining.
    detector = save_checkpoint(build_model("impulse", ARCHITECTURES["impulse"].tiny), tmp_path / "detector")
    filler = save_checkpoint(build_model("unet", ARCHITECTURES["unet"].tiny), tmp_path / "filler")
    train.publish_pair(detector, filler=filler, out=published)
    assert "retrain it with `python train.py --recipe moved`" in capsys.readouterr().out
    kept = load_model(published)
    assert all(torch.equal(v, kept.refiner.state_dict()[k]) for k, v in after.refiner.state_dict().items())
    assert "A refiner follows" in read_card(published).text
    # Frozen parts that the starting checkpoint cannot fill would stay random: refused before training.
    from denoiser.training import init_weights
    deeper = build_model("detect_fill", {**tiny, "filler": {"widths": [8, 16, 32], "blocks": [1, 1, 1]},
                                         "refiner": {"widths": [8], "blocks": [1]}})
    with pytest.raises(ValueError, match="frozen parts must come from it"):
        init_weights(deeper, str(start))


def test_init_all_also_copies_the_tensors_a_recipe_starts_fresh(tmp_path: Path) -> None:
    from denoiser.architectures import ARCHITECTURES, build_model
    from denoiser.checkpoint import save_checkpoint
    from denoiser.training import init_weights

    torch.manual_seed(0)
    trained = build_model("detect_fill", ARCHITECTURES["detect_fill"].tiny)
    with torch.no_grad():
        trained.refiner.tail.weight.fill_(0.25)  # a refiner that learned something
    source = save_checkpoint(trained, tmp_path / "moved")
    for everything in (False, True):
        model = build_model("detect_fill", ARCHITECTURES["detect_fill"].tiny)
        _, fresh = init_weights(model, str(source), everything=everything)
        assert torch.equal(model.refiner.tail.weight, trained.refiner.tail.weight) is everything
        assert any(name.startswith("refiner.") for name in fresh) is not everything
    # The flag reaches the run's settings, and a run without it starts the refiner fresh.
    assert train.apply_flags(TrainConfig(), train.parse_args(["--init-from", str(source), "--init-all"])).init_all
    assert not train.apply_flags(TrainConfig(), train.parse_args(["--init-from", str(source)])).init_all
    with pytest.raises(ValueError, match="give --init-from too"):  # nothing to copy from: refused before a run
        train.new_config(train.parse_args(["--init-all"]), ["--init-all"])
