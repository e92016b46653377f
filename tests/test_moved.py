"""denoiser.moved: the test that tells lossless salt-and-pepper from impulses that JPEG or resizing moved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from denoiser.imaging import array_to_tensor
from denoiser.moved import EVERY, isolated_extremes, moved_impulses, moved_shares
from denoiser.noise import salt_and_pepper_array


def saved(image: np.ndarray, path: Path, **options) -> torch.Tensor:
    """The image written to a real file and read back: (1, C, H, W) in [0, 1]."""
    Image.fromarray(image).save(path, **options)
    with Image.open(path) as decoded:
        pixels = np.asarray(decoded.convert("RGB"))
    return array_to_tensor(pixels).unsqueeze(0)  # (C, H, W) -> (1, C, H, W)


@pytest.mark.parametrize("amount", [0.05, 0.3, 0.7])
def test_lossless_noise_stays_with_the_exact_rule_and_jpeg_noise_does_not(photo: np.ndarray, tmp_path: Path,
                                                                           amount: float) -> None:
    noisy = salt_and_pepper_array(photo, amount=amount, seed=0)
    per_channel = salt_and_pepper_array(photo, amount=amount, seed=0, per_channel=True)
    for lossless in (saved(noisy, tmp_path / "noisy.png"), saved(per_channel, tmp_path / "per-channel.webp",
                                                                  lossless=True)):
        assert not moved_impulses(lossless).item()
    for quality in (95, 75, 50):
        assert moved_impulses(saved(noisy, tmp_path / f"noisy-{quality}.jpg", quality=quality)).item()


def test_clean_photos_and_clipped_regions_stay_with_the_exact_rule(photo: np.ndarray, tmp_path: Path) -> None:
    assert not moved_impulses(saved(photo, tmp_path / "clean.jpg", quality=75)).item()
    clipped = photo.copy()
    clipped[:40, :60] = 255  # a blown-out highlight and a black shadow: big regions, not isolated values
    clipped[80:, 100:] = 0
    assert not moved_impulses(saved(clipped, tmp_path / "clipped.jpg", quality=75)).item()


def test_impulses_near_black_and_white_count_as_moved(photo: np.ndarray) -> None:
    noisy = salt_and_pepper_array(photo, amount=0.2, seed=1)
    near = np.where(noisy == 0, 12, np.where(noisy == 255, 241, noisy)).astype(np.uint8)
    share, ratio = moved_shares(array_to_tensor(near).unsqueeze(0))
    assert share.item() > 0.05 and ratio.item() > 0.9
    assert moved_impulses(array_to_tensor(near).unsqueeze(0)).item()


def test_each_image_of_a_batch_is_judged_on_its_own(photo: np.ndarray, tmp_path: Path) -> None:
    noisy = salt_and_pepper_array(photo, amount=0.3, seed=0)
    lossless, jpeg = saved(noisy, tmp_path / "a.png"), saved(noisy, tmp_path / "b.jpg", quality=90)
    batch = torch.cat([lossless, jpeg, lossless, jpeg])
    assert moved_impulses(batch).tolist() == [False, True, False, True]
    assert moved_impulses(batch[:, :1]).tolist() == [False, True, False, True]  # one channel is judged alike


def test_an_isolated_extreme_has_five_of_its_eight_neighbours_on_the_other_side() -> None:
    image = torch.full((1, 1, 7, 7), 0.5)
    image[..., 1, 1] = 0.02  # near black among mid-greys
    image[..., 0, 6] = 1.0  # white in a corner: 3 neighbours inside the image
    image[..., 3, :] = 1.0  # a 1-px white line: 6 of 8 neighbours darker, except at the image's edge
    found = isolated_extremes(image)[0, 0]
    assert found[1, 1] and not found[0, 6] and found[3, 1:6].all() and not found[3, 0]
    image[..., 4, :] = 1.0  # a 2-px band: 3 darker neighbours at most
    assert not isolated_extremes(image)[0, 0, 3:5].any()


def test_tall_images_are_read_in_bands_with_the_same_neighbours_as_whole(photo: np.ndarray, tmp_path: Path) -> None:
    noisy = saved(salt_and_pepper_array(photo, amount=0.3, seed=2), tmp_path / "tall.jpg", quality=80)
    assert noisy.shape[-2] > EVERY
    share, ratio = moved_shares(noisy)
    # The rows the bands read, judged on the whole image: the same counts.
    whole = isolated_extremes(noisy)
    rows = torch.zeros(noisy.shape[-2], dtype=torch.bool)
    for top in range(0, noisy.shape[-2], EVERY):
        rows[top:top + 16] = True
    inexact = (noisy > 0) & (noisy < 1)
    moved, both = (whole & inexact)[..., rows, :].sum().item(), whole[..., rows, :].sum().item()
    assert share.item() == pytest.approx(moved / noisy[0][..., rows, :].numel())
    assert ratio.item() == pytest.approx(moved / both)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 1, 9), (1, 3, 9, 1), (1, 1, EVERY + 1, 3)])
def test_any_image_size_gets_an_answer(shape: tuple[int, ...]) -> None:
    images = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    assert moved_impulses(images).shape == (shape[0],)
    assert not moved_impulses(torch.zeros(shape)).any() and not moved_impulses(torch.ones(shape)).any()
