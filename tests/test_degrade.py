"""The real-world steps after the noise: near-extreme impulses, resizing, JPEG."""

import pytest
import torch

from denoiser.degrade import Degradation, jpeg_round_trip, move_off_extremes, resize_round_trip
from denoiser.noise import salt_and_pepper


def _pair(seed: int = 0, *, b: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    clean = 0.1 + 0.8 * torch.rand(b, 3, 32, 32, generator=g)  # no clean value at the extremes
    return salt_and_pepper(clean, amount=0.3, generator=g), clean


def test_near_extreme_moves_only_impulses_and_only_a_little() -> None:
    noisy, clean = _pair()
    chosen = torch.tensor([True, False] * 4)
    moved = move_off_extremes(noisy, clean, spread=15 / 255, chosen=chosen, generator=torch.Generator().manual_seed(1))
    impulse = noisy != clean
    assert torch.equal(moved[~impulse], noisy[~impulse])  # clean pixels untouched
    assert torch.equal(moved[1::2], noisy[1::2])  # images not chosen untouched
    shift = (moved - noisy)[0::2][impulse[0::2]].abs()
    assert shift.max() <= 15 / 255 + 1e-6 and (shift > 0).float().mean() > 0.99
    salt = (noisy >= 1) & impulse
    assert (moved[0::2][salt[0::2]] >= 1 - 15 / 255 - 1e-6).all()


def test_resize_round_trip_keeps_the_size_and_smears_an_impulse() -> None:
    image = torch.full((1, 1, 40, 40), 0.5)
    image[..., 20, 20] = 1.0
    out = resize_round_trip(image, scale=0.5)
    assert out.shape == image.shape
    assert out[..., 20, 20] < 1.0 and (out[..., 18:23, 18:23] > 0.5 + 1e-3).sum() > 1


def test_jpeg_round_trip_moves_impulses_off_the_extremes() -> None:
    noisy, _ = _pair(b=2)
    out = jpeg_round_trip(noisy, qualities=[75, 95])
    exact = lambda x: ((x <= 0) | (x >= 1)).float().mean()  # noqa: E731
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    assert exact(out) < 0.7 * exact(noisy)
    with pytest.raises(ValueError, match="one quality per image"):
        jpeg_round_trip(noisy, qualities=[75])


def test_degradation_is_seeded_leaves_inputs_alone_and_respects_shares() -> None:
    noisy, clean = _pair(b=64)
    before = noisy.clone(), clean.clone()
    recipe = Degradation(near_extreme_share=0.0, resize_share=0.0, jpeg_share=0.5)
    a = recipe.apply(noisy, clean, generator=torch.Generator().manual_seed(3))
    b = recipe.apply(noisy, clean, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(noisy, before[0]) and torch.equal(clean, before[1])
    changed = (a[0] != noisy).flatten(1).any(1)
    assert 0.3 < changed.float().mean().item() < 0.7
    # The target is the clean image saved the same way: unchanged where the noisy one was not compressed.
    assert torch.equal(a[1][~changed], clean[~changed]) and not torch.equal(a[1][changed], clean[changed])
    off = Degradation(near_extreme_share=0, resize_share=0, jpeg_share=0).apply(noisy, clean)
    assert torch.equal(off[0], noisy) and torch.equal(off[1], clean)
    # With the original as the target, the same draws compress the same noisy images and leave the clean ones.
    original = Degradation(near_extreme_share=0.0, resize_share=0.0, jpeg_share=0.5, jpeg_target="original")
    c = original.apply(noisy, clean, generator=torch.Generator().manual_seed(3))
    assert torch.equal(c[0], a[0]) and torch.equal(c[1], clean)


@pytest.mark.parametrize("bad", [{"jpeg_share": 1.5}, {"resize_min": 0.0}, {"jpeg_min": 0},
                                 {"jpeg_min": 90, "jpeg_max": 80}, {"jpeg_target": "clean"}])
def test_degradation_refuses_bad_settings(bad: dict) -> None:
    with pytest.raises(ValueError):
        Degradation(**bad)
