import numpy as np
import pytest
import torch

from denoiser import filters
from denoiser.filters import AdaptiveMedianDenoiser, MedianDenoiser, adaptive_median_filter, median_filter
from denoiser.interface import Denoiser

# ----------------------------------------------------------------------------- slow references, pixel by pixel


def _reference_median(plane: np.ndarray, size: int) -> np.ndarray:
    pad = size // 2
    padded = np.pad(plane, pad, mode="reflect")  # numpy's "reflect" = torch's: the edge is not repeated
    h, w = plane.shape
    return np.array([[np.median(padded[y:y + size, x:x + size]) for x in range(w)] for y in range(h)])


def _reference_adaptive(plane: np.ndarray, max_window: int) -> np.ndarray:
    pad = max_window // 2
    padded = np.pad(plane, pad, mode="reflect")
    out = plane.copy()
    for y in range(plane.shape[0]):
        for x in range(plane.shape[1]):
            for size in range(3, max_window + 1, 2):
                r = size // 2
                window = padded[y + pad - r:y + pad + r + 1, x + pad - r:x + pad + r + 1]
                lo, med, hi = window.min(), np.median(window), window.max()
                if lo < med < hi:  # stage A passed: stage B keeps the pixel unless it is an extreme
                    out[y, x] = plane[y, x] if lo < plane[y, x] < hi else med
                    break
                out[y, x] = med  # only kept when the largest window also fails stage A
    return out


def _noisy(shape: tuple[int, ...], *, amount: float, seed: int = 0, levels: int | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=gen)
    if levels:  # few grey levels give many ties, where min/median/max comparisons are most fragile
        x = torch.round(x * levels) / levels
    impulses = torch.rand(shape, generator=gen) < amount
    return torch.where(impulses, (torch.rand(shape, generator=gen) < 0.5).float(), x)


def _per_plane(images: torch.Tensor, fn) -> torch.Tensor:
    planes = images.reshape(-1, *images.shape[-2:]).numpy()  # (B, C, H, W) -> (B*C, H, W)
    return torch.from_numpy(np.stack([fn(p) for p in planes]).astype(np.float32)).reshape(images.shape)


# ----------------------------------------------------------------------------- against the references


@pytest.mark.parametrize("size", [3, 5, 7])
@pytest.mark.parametrize("levels", [None, 6])
def test_median_matches_slow_reference(size: int, levels: int | None) -> None:
    x = _noisy((2, 3, 13, 17), amount=0.3, levels=levels)
    assert torch.equal(median_filter(x, size=size), _per_plane(x, lambda p: _reference_median(p, size)))


@pytest.mark.parametrize("max_window", [3, 5, 7])
@pytest.mark.parametrize("amount, levels", [(0.2, None), (0.6, None), (0.4, 6), (0.9, None)])
def test_adaptive_median_matches_slow_reference(max_window: int, amount: float, levels: int | None) -> None:
    x = _noisy((2, 2, 14, 19), amount=amount, levels=levels, seed=int(amount * 10))
    expected = _per_plane(x, lambda p: _reference_adaptive(p, max_window))
    assert torch.equal(adaptive_median_filter(x, max_window=max_window), expected)


@pytest.mark.parametrize("fn", [lambda x: median_filter(x, size=5), lambda x: adaptive_median_filter(x, max_window=7)])
def test_row_bands_give_the_same_result_as_one_pass(fn, monkeypatch: pytest.MonkeyPatch) -> None:
    x = _noisy((2, 3, 40, 23), amount=0.5, seed=3)
    whole = fn(x)
    monkeypatch.setattr(filters, "_CHUNK_VALUES", 2 * 3 * 23 * 49 * 3)  # bands of a few rows
    assert torch.equal(fn(x), whole)


# ----------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("fn", [
    lambda x: median_filter(x, size=3), lambda x: median_filter(x, size=5), lambda x: adaptive_median_filter(x),
])
def test_constant_image_with_scattered_impulses_is_recovered(fn) -> None:
    clean = torch.full((1, 1, 24, 24), 0.4)
    noisy = clean.clone()
    for y, x, v in ((0, 0, 1.0), (5, 7, 0.0), (12, 12, 1.0), (23, 10, 0.0), (17, 23, 1.0)):
        noisy[0, 0, y, x] = v
    assert torch.equal(fn(noisy), clean)


def test_adaptive_median_touches_only_window_extremes() -> None:
    # Distinct grey values plus sparse impulses: stage A always passes within 7x7, so a pixel that is no
    # extreme of its 3x3 window (nor of any larger one) must come back unchanged, and every impulse is replaced.
    gen = torch.Generator().manual_seed(5)
    x = torch.randperm(48 * 48, generator=gen).float().reshape(1, 1, 48, 48) / (48 * 48) * 0.8 + 0.1
    impulses = torch.rand(x.shape, generator=gen) < 0.05
    x = torch.where(impulses, (torch.rand(x.shape, generator=gen) < 0.5).float(), x)
    out = adaptive_median_filter(x)
    pad = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    lo = -torch.nn.functional.max_pool2d(-pad, 3, stride=1)
    hi = torch.nn.functional.max_pool2d(pad, 3, stride=1)
    extreme = (x == lo) | (x == hi)
    assert torch.equal(out[~extreme], x[~extreme])
    assert bool((out[impulses] != x[impulses]).all())
    assert bool(((out > 0) & (out < 1)).all())


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (2, 3, 17, 9), (1, 1, 2, 2), (1, 3, 5, 40)])
@pytest.mark.parametrize("fn", [lambda x: median_filter(x, size=5), lambda x: adaptive_median_filter(x)])
def test_shape_dtype_and_range_are_kept(shape: tuple[int, ...], fn) -> None:
    x = _noisy(shape, amount=0.3).double()
    out = fn(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert bool((out >= x.amin()).all() and (out <= x.amax()).all())  # a median never invents values


@pytest.mark.parametrize("call, message", [
    (lambda: median_filter(torch.rand(1, 1, 8, 8), size=4), "odd integer"),
    (lambda: median_filter(torch.rand(1, 1, 8, 8), size=1), "odd integer"),
    (lambda: adaptive_median_filter(torch.rand(1, 1, 8, 8), max_window=True), "odd integer"),
    (lambda: median_filter(torch.rand(8, 8), size=3), r"\(B, C, H, W\)"),
    (lambda: adaptive_median_filter(torch.zeros(1, 1, 8, 8, dtype=torch.uint8)), "float"),
    (lambda: adaptive_median_filter(torch.zeros(0, 1, 8, 8)), "empty"),
    (lambda: median_filter(torch.zeros(1, 3, 0, 8), size=3), "empty"),
    (lambda: MedianDenoiser(size=6), "odd integer"),
])
def test_bad_input_is_a_clear_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- Denoiser wrappers


@pytest.mark.parametrize("denoiser, name", [
    (MedianDenoiser(size=3), "3×3 median"), (MedianDenoiser(size=5), "5×5 median"),
    (AdaptiveMedianDenoiser(max_window=7), "Adaptive median"),
])
def test_denoisers_filter_colour_per_channel(denoiser: Denoiser, name: str) -> None:
    assert isinstance(denoiser, Denoiser) and denoiser.name == name
    x = _noisy((2, 3, 20, 24), amount=0.3)
    out = denoiser.denoise_batch(x)
    for c in range(3):
        assert torch.equal(out[:, c:c + 1], denoiser.denoise_batch(x[:, c:c + 1]))


@pytest.mark.parametrize("shape, dtype", [((20, 24, 3), np.uint8), ((20, 24), np.float32)])
def test_denoise_numpy_is_the_tensor_filter_and_removes_impulses(shape: tuple[int, ...], dtype) -> None:
    rng = np.random.default_rng(0)
    clean = np.broadcast_to(np.linspace(60, 200, shape[1]), shape[:2])  # a smooth ramp, (H, W)
    clean = np.repeat(clean[..., None], 3, axis=2) if len(shape) == 3 else clean
    image = np.where(rng.random(shape) < 0.2, 255, clean).astype(np.uint8)  # 20% salt
    image = image if dtype == np.uint8 else (image / 255).astype(dtype)
    out = AdaptiveMedianDenoiser().denoise(image)
    assert out.shape == image.shape and out.dtype == image.dtype
    planes = torch.from_numpy(np.asarray(image, dtype=np.float32) / (255 if dtype == np.uint8 else 1))
    planes = planes.permute(2, 0, 1) if len(shape) == 3 else planes[None]  # (H, W, C) or (H, W) -> (C, H, W)
    expected = adaptive_median_filter(planes[None], max_window=7)[0]
    expected = expected.permute(1, 2, 0) if len(shape) == 3 else expected[0]  # (C, H, W) -> (H, W, C) or (H, W)
    scale = 255 if dtype == np.uint8 else 1
    assert np.abs(out.astype(np.float32) - expected.numpy() * scale).max() <= (0.5 if dtype == np.uint8 else 1e-6)
    white = 255 if dtype == np.uint8 else 1.0
    assert (image == white).mean() > 0.15 and (out == white).mean() == 0.0  # every grain of salt is gone
