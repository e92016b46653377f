import math

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from denoiser.metrics import MAX_PSNR_DB, psnr, ssim


def _images(shape: tuple[int, ...], *, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("offset, data_range, expected_db", [
    (0.1, 1.0, 20.0),  # MSE 0.01
    (0.01, 1.0, 40.0),  # MSE 1e-4
    (0.5, 1.0, 10 * math.log10(4)),  # MSE 0.25
    (0.1, 2.0, 10 * math.log10(4 / 0.01)),
])
def test_psnr_of_a_known_mse(offset: float, data_range: float, expected_db: float) -> None:
    target = _images((3, 1, 16, 16)) * 0.4
    pred = target + offset
    assert torch.allclose(psnr(pred, target, data_range=data_range), torch.full((3,), expected_db), atol=1e-4)


def test_psnr_is_per_image_over_all_channels() -> None:
    target = torch.zeros(2, 3, 8, 8)
    pred = target.clone()
    pred[0, 0] = 0.1  # one channel of three off by 0.1: MSE 0.01 / 3
    pred[1] = 0.1  # every channel off: MSE 0.01
    expected = torch.tensor([10 * math.log10(300), 20.0])
    assert torch.allclose(psnr(pred, target), expected, atol=1e-4)


def test_psnr_of_identical_images_is_capped_not_inf_or_nan() -> None:
    x = _images((4, 3, 16, 16))
    assert torch.equal(psnr(x, x), torch.full((4,), MAX_PSNR_DB))


@pytest.mark.parametrize("shape", [(3, 1, 32, 32), (2, 3, 11, 20)])
def test_ssim_of_identical_images_is_one(shape: tuple[int, ...]) -> None:
    x = _images(shape)
    out = ssim(x, x)
    assert out.shape == (shape[0],)
    assert torch.allclose(out, torch.ones(shape[0]), atol=1e-5)


@pytest.mark.parametrize("a, b", [(0.5, 0.25), (0.9, 0.1), (0.3, 0.3)])
def test_ssim_of_constant_images_is_the_luminance_term(a: float, b: float) -> None:
    # Zero variance leaves only (2ab + C1) / (a^2 + b^2 + C1), with C1 = (0.01 * data_range)^2.
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    # float64: E[x^2] - E[x]^2 in float32 leaves ~1e-7 of fake variance, visible next to C2 = 9e-4.
    pred, target = (torch.full((2, 1, 16, 16), v, dtype=torch.float64) for v in (b, a))
    out = ssim(pred, target)
    assert torch.allclose(out, torch.full((2,), expected, dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("shape", [(5, 1, 32, 32), (3, 3, 20, 27), (1, 3, 6, 64)])
def test_ssim_equals_torchmetrics_per_image(shape: tuple[int, ...]) -> None:
    clean = _images(shape)
    noisy = (clean + 0.2 * torch.randn(shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    expected = structural_similarity_index_measure(noisy, clean, data_range=1.0, reduction="none")
    assert torch.allclose(ssim(noisy, clean), expected, atol=1e-6)


def test_ssim_falls_as_noise_grows() -> None:
    clean = torch.nn.functional.avg_pool2d(_images((4, 1, 36, 36)), 5, stride=1)  # smooth (4, 1, 32, 32)
    gen = torch.Generator().manual_seed(1)
    scores = [ssim((clean + sigma * torch.randn(clean.shape, generator=gen)).clamp(0, 1), clean)
              for sigma in (0.02, 0.1, 0.3)]
    assert bool((scores[0] > scores[1]).all() and (scores[1] > scores[2]).all())


@pytest.mark.parametrize("metric", [psnr, ssim])
@pytest.mark.parametrize("pred, target, message", [
    (torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 17), "shapes differ"),
    (torch.rand(1, 16, 16), torch.rand(1, 16, 16), r"\(B, C, H, W\)"),
    (torch.zeros(2, 1, 16, 16, dtype=torch.uint8), torch.rand(2, 1, 16, 16), "float"),
])
def test_bad_input_is_a_clear_error(metric, pred, target, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metric(pred, target)


def test_ssim_rejects_images_too_small_to_pad() -> None:
    with pytest.raises(ValueError, match="at least 6x6"):
        ssim(torch.rand(1, 1, 5, 32), torch.rand(1, 1, 5, 32))


@pytest.mark.parametrize("shape, band_rows", [((2, 3, 40, 37), 7), ((1, 1, 6, 9), 256), ((1, 3, 70, 33), 1),
                                              ((3, 1, 33, 64), 16)])
def test_banded_psnr_and_ssim_equal_the_whole_image_figures(shape: tuple[int, ...], band_rows: int) -> None:
    from denoiser.metrics import psnr_ssim_in_bands

    target = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    pred = (target + 0.2 * torch.randn(shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    pred[0, 0, :3] = target[0, 0, :3]  # a stretch of exact pixels, so bands differ from each other
    p, s = psnr_ssim_in_bands(pred, target, band_rows=band_rows)
    assert torch.allclose(p, psnr(pred, target), atol=1e-4)
    assert torch.allclose(s, ssim(pred, target), atol=1e-5)
    assert psnr_ssim_in_bands(target, target)[0].tolist() == [MAX_PSNR_DB] * shape[0]
    # (H, W, C) memory viewed as (B, C, H, W), as the app passes numpy images: the same figures
    strided = [x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) for x in (pred, target)]
    assert all(torch.equal(a, b) for a, b in zip(psnr_ssim_in_bands(*strided, band_rows=band_rows), (p, s)))
