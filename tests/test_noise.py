"""Noise statistics, reproducibility and validation."""

import pytest
import torch

from denoiser.noise import NoiseRecipe, article_noise, impulse_mask, salt_and_pepper


def mid_gray(b: int = 16, c: int = 1, size: int = 64) -> torch.Tensor:
    return torch.full((b, c, size, size), 0.5)


@pytest.mark.parametrize("amount", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("salt_share", [0.5, 0.2])
def test_amount_and_salt_share(amount: float, salt_share: float) -> None:
    noisy = salt_and_pepper(mid_gray(), amount=amount, salt_share=salt_share,
                            generator=torch.Generator().manual_seed(1))
    salt, pepper = (noisy == 1).float().mean().item(), (noisy == 0).float().mean().item()
    assert salt + pepper == pytest.approx(amount, abs=0.01)
    assert salt == pytest.approx(amount * salt_share, abs=0.01)


def test_article_rule_gives_15_percent_salt_10_percent_pepper() -> None:
    noisy = article_noise(mid_gray(b=64), intensity=0.2, generator=torch.Generator().manual_seed(0))
    assert (noisy == 1).float().mean().item() == pytest.approx(0.15, abs=0.005)
    assert (noisy == 0).float().mean().item() == pytest.approx(0.10, abs=0.005)
    untouched = (noisy != 0) & (noisy != 1)
    assert torch.equal(noisy[untouched], mid_gray(b=64)[untouched])


def test_article_rule_keeps_its_float_quirk_at_07() -> None:
    # In Python 1 - 0.7 == 0.30000000000000004, never equal to round(u, 1): the article makes no pepper there.
    noisy = article_noise(mid_gray(), intensity=0.7, generator=torch.Generator().manual_seed(0))
    assert (noisy == 0).float().mean().item() == 0.0
    assert (noisy == 1).float().mean().item() == pytest.approx(0.65, abs=0.01)


def test_same_seed_same_noise_and_different_seed_differs() -> None:
    x = torch.rand(4, 3, 32, 32)
    a = salt_and_pepper(x, amount=0.3, generator=torch.Generator().manual_seed(7))
    b = salt_and_pepper(x, amount=0.3, generator=torch.Generator().manual_seed(7))
    c = salt_and_pepper(x, amount=0.3, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(article_noise(x, generator=torch.Generator().manual_seed(3)),
                       article_noise(x, generator=torch.Generator().manual_seed(3)))


def test_per_pixel_is_default_and_per_channel_differs() -> None:
    x = mid_gray(b=4, c=3)
    per_pixel = salt_and_pepper(x, amount=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(per_pixel[:, 0], per_pixel[:, 1]) and torch.equal(per_pixel[:, 1], per_pixel[:, 2])
    per_channel = salt_and_pepper(x, amount=0.5, per_channel=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(per_channel[:, 0], per_channel[:, 1])
    assert impulse_mask(per_channel).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_per_image_amounts() -> None:
    amounts = torch.tensor([0.0, 0.25, 0.5, 0.75])
    noisy = salt_and_pepper(mid_gray(b=4, size=128), amount=amounts, generator=torch.Generator().manual_seed(0))
    measured = impulse_mask(noisy).float().mean(dim=(1, 2, 3))
    assert torch.allclose(measured, amounts, atol=0.01)


def test_recipe_draws_amounts_in_range() -> None:
    recipe = NoiseRecipe(amount_min=0.2, amount_max=0.4)
    noisy = recipe.apply(mid_gray(b=32), generator=torch.Generator().manual_seed(0))
    measured = impulse_mask(noisy).float().mean(dim=(1, 2, 3))
    assert measured.min() > 0.18 and measured.max() < 0.42


def test_recipe_focus_share_draws_from_the_focus_range() -> None:
    # Two disjoint ranges, so each image's measured amount says which one it came from.
    recipe = NoiseRecipe(amount_min=0.0, amount_max=0.1, focus_share=0.75, focus_min=0.6, focus_max=0.7)
    noisy = recipe.apply(mid_gray(b=400, size=32), generator=torch.Generator().manual_seed(0))
    measured = impulse_mask(noisy).float().mean(dim=(1, 2, 3))
    focused = measured > 0.35
    assert bool(((measured < 0.15) | ((measured > 0.55) & (measured < 0.75))).all())
    assert 0.68 < focused.float().mean().item() < 0.82  # 0.75 of 400 draws: 5 sigma is about +-0.11


def test_recipe_without_focus_keeps_its_noise_stream() -> None:
    plain = NoiseRecipe(amount_min=0.1, amount_max=0.9)
    unused_focus = NoiseRecipe(amount_min=0.1, amount_max=0.9, focus_min=0.2, focus_max=0.3)
    images = mid_gray(b=8)
    a = plain.apply(images, generator=torch.Generator().manual_seed(3))
    b = unused_focus.apply(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    ({"amount": 1.5}, "amount must be in"),
    ({"amount": -0.1}, "amount must be in"),
    ({"amount": 0.1, "salt_share": 2.0}, "salt_share must be in"),
    ({"amount": torch.tensor([0.1, 0.2])}, "one value per image"),
])
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        salt_and_pepper(mid_gray(b=3), **kwargs)


def test_bad_images_are_refused() -> None:
    with pytest.raises(ValueError, match="B, C, H, W"):
        salt_and_pepper(torch.rand(32, 32), amount=0.1)
    with pytest.raises(ValueError, match="float"):
        salt_and_pepper(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), amount=0.1)
    with pytest.raises(ValueError, match="rule"):
        NoiseRecipe(rule="gaussian")
    with pytest.raises(ValueError, match="focus_share"):
        NoiseRecipe(focus_share=1.5)
    with pytest.raises(ValueError, match="focus_min <= focus_max"):
        NoiseRecipe(focus_min=0.8, focus_max=0.5)


def test_numpy_images_keep_shape_dtype_and_seed() -> None:
    import numpy as np

    from denoiser.noise import salt_and_pepper_array

    image = np.full((40, 30, 3), 128, np.uint8)
    a = salt_and_pepper_array(image, amount=0.3, seed=5)
    assert a.shape == image.shape and a.dtype == np.uint8
    assert np.array_equal(a, salt_and_pepper_array(image, amount=0.3, seed=5))
    hit = ((a == 0) | (a == 255)).all(axis=2).mean()
    assert hit == pytest.approx(0.3, abs=0.05)


def test_numpy_images_per_channel_hit_each_value_on_its_own() -> None:
    import numpy as np

    from denoiser.imaging import array_to_tensor, tensor_to_array
    from denoiser.noise import salt_and_pepper_array

    image = np.random.default_rng(0).integers(1, 255, (60, 50, 3)).astype(np.uint8)
    a = salt_and_pepper_array(image, amount=0.4, seed=5, per_channel=True)
    hit = (a == 0) | (a == 255)
    assert hit.mean() == pytest.approx(0.4, abs=0.03)
    assert hit.all(axis=2).mean() == pytest.approx(0.4**3, abs=0.02)  # independent channels: whole pixels are rare
    expected = salt_and_pepper(array_to_tensor(image).unsqueeze(0), amount=0.4, per_channel=True,
                               generator=torch.Generator().manual_seed(5))
    assert np.array_equal(a, tensor_to_array(expected[0], like=image))  # the tensor function's very values
    gray = image[..., 0]
    assert np.array_equal(salt_and_pepper_array(gray, amount=0.4, seed=5, per_channel=True),
                          salt_and_pepper_array(gray, amount=0.4, seed=5))  # one channel: the same either way
