"""denoiser.strokes: black and white strokes too large to be noise keep their values; noise, shadows and what the
network kept are left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoiser import load_denoiser
from denoiser.imaging import array_to_tensor, tensor_to_array
from denoiser.noise import salt_and_pepper
from denoiser.strokes import MIN_SIZE, impulse_density, kept_strokes, min_size
from denoiser.interface import Denoiser
from denoiser.structure import StructureImage, draw_lines, draw_text, structure_set


def _repainted(images: torch.Tensor) -> torch.Tensor:
    """What a network that repaints every exact extreme with mid-grey would return."""
    return torch.where((images == 0) | (images == 1), 0.5, images)


def test_the_size_bars_grow_with_the_density_and_stop_at_amount_0_32() -> None:
    densities, sizes = zip(*MIN_SIZE)
    assert list(densities) == sorted(densities) and list(sizes) == sorted(sizes)
    assert min_size(0.0) == sizes[0] and min_size(densities[-1]) == sizes[-1]
    assert min_size(0.11) == min_size(0.12)
    assert densities[-1] == 0.16 and min_size(densities[-1] + 1e-6) is None


@pytest.mark.parametrize("density", [density for density, _ in MIN_SIZE])
def test_noise_alone_is_never_kept_at_any_listed_density(density: float) -> None:
    # Salt and pepper each at `density` on mid-grey: the clusters they make must all stay under the bar.
    g = torch.Generator().manual_seed(round(density * 1000))
    x = torch.full((2, 2, 256, 256), 0.5)
    draw = torch.rand(x.shape, generator=g)
    x = torch.where(draw < density, 0.0, torch.where(draw > 1 - density, 1.0, x))
    assert not kept_strokes(x, _repainted(x)).any()


def test_the_impulse_density_is_read_where_noise_shows_alone_and_not_from_strokes() -> None:
    g = torch.Generator().manual_seed(4)
    page = torch.ones(1, 2, 256, 256)
    page[:, :, 8::8, 10:250] = 0.0  # 31 rows of black strokes: 11% of the values, none alone
    assert np.all(impulse_density(page == 0) < 0.001)  # no value alone: none is noise
    for density in (0.05, 0.15):
        x = torch.where(torch.rand(page.shape, generator=g) < density, 0.0, page)
        found = impulse_density(x == 0)
        # A little high (three standard deviations: 0.003 to 0.009 here); the plain share is 0.11 higher.
        assert np.all((found > density) & (found < density + 0.025)), (density, found)
    solid = torch.zeros(1, 1, 8, 8)  # no value alone at all: the share
    assert impulse_density(solid == 0).tolist() == [1.0]


def test_strokes_under_light_noise_come_back_and_nothing_else_is_kept() -> None:
    rng = np.random.default_rng(0)
    background = np.full((256, 256), 0.55, dtype=np.float32)
    drawn, lines = draw_lines(background, generator=rng, count=4, value=0.0)
    drawn, text = draw_text(drawn, generator=rng, count=4, sizes=(16, 24), value=1.0)
    clean = torch.from_numpy(drawn)[None, None]  # (H, W) -> (1, 1, H, W)
    noisy = salt_and_pepper(clean, amount=0.1, generator=torch.Generator().manual_seed(0))
    kept = kept_strokes(noisy, _repainted(noisy))[0, 0].numpy()
    unhit = (noisy == clean)[0, 0].numpy()
    # Salt on a one-pixel black line cuts it, and pieces under the bar are lost: lines keep less than text.
    assert kept[text & unhit].mean() > 0.9 and kept[lines & unhit].mean() > 0.75
    extremes = ((noisy == 0) | (noisy == 1))[0, 0].numpy()
    assert not kept[~extremes].any()  # only exact extremes are ever kept
    assert kept[extremes & ~(lines | text)].mean() < 0.1  # of the impulses, only a few that touch a stroke


def test_what_the_network_kept_is_left_to_it() -> None:
    x = torch.full((1, 1, 64, 64), 0.5)
    x[0, 0, 20, 5:60] = 0.0  # a long black line the network kept as it was
    assert kept_strokes(x, x.clone()).sum() == 0
    assert kept_strokes(x, _repainted(x)).sum() == 55


def test_a_shadow_clipped_in_places_is_not_a_stroke() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.full((1, 1, 96, 96), 0.6)
    shadow = torch.rand(1, 1, 40, 40, generator=g) * 0.08  # near black, clipped to 0 on a third of its values
    x[..., 20:60, 20:60] = torch.where(torch.rand(shadow.shape, generator=g) < 0.35, 0.0, shadow)
    noisy = salt_and_pepper(x, amount=0.1, generator=g)
    assert not kept_strokes(noisy, _repainted(noisy))[..., 20:60, 20:60].any()


def test_images_and_channels_are_read_apart() -> None:
    # Seven values of one column at the end of each map and seven at the start of the next: together they would be
    # a cluster of 14, over the bar of these small maps with no noise (12); apart, each is under it.
    x = torch.full((2, 2, 16, 16), 0.5)
    x[0, 0, 9:, 4] = x[0, 1, :7, 4] = 0.0  # across channels
    x[0, 1, 9:, 9] = x[1, 0, :7, 9] = 1.0  # across images
    for value in (0.0, 1.0):
        assert all(min_size(d) <= 12 for d in impulse_density(x == value))
    assert not kept_strokes(x, _repainted(x)).any()
    x[1, 1, :, 2] = 0.0  # 16 in one map: kept
    assert kept_strokes(x, _repainted(x)).sum() == 16


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        kept_strokes(torch.zeros(1, 1, 8, 8), torch.zeros(1, 3, 8, 8))


@pytest.fixture(scope="module")
def drawings() -> dict[str, StructureImage]:
    return {s.name: s for s in structure_set() if s.name in ("text on a page", "line art", "lines grey")}


@pytest.fixture(scope="module")
def with_and_without() -> tuple[Denoiser, Denoiser]:
    return load_denoiser(device="cpu"), load_denoiser(device="cpu", keep_strokes=False)


def _correct(out: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    diff = np.abs(out.astype(int) - clean.astype(int))
    diff = diff if diff.ndim == 2 else diff.max(axis=-1)
    return float((diff[mask] <= 2).mean())


@pytest.mark.parametrize("name", ["text on a page", "line art", "lines grey"])
def test_the_default_model_keeps_text_and_drawings_under_light_noise(drawings: dict[str, StructureImage],
                                                                     with_and_without: tuple[Denoiser, Denoiser],
                                                                     name: str) -> None:
    s = drawings[name]
    noisy = salt_and_pepper(array_to_tensor(s.image).unsqueeze(0), amount=0.1,
                            generator=torch.Generator().manual_seed(5))
    keeping, erasing = (d.denoise_batch(noisy) for d in with_and_without)
    with_rule = _correct(tensor_to_array(keeping[0], like=s.image), s.image, s.mask)
    without = _correct(tensor_to_array(erasing[0], like=s.image), s.image, s.mask)
    assert with_rule > without + 0.2 and with_rule > 0.5, (with_rule, without)
    changed = (keeping != erasing).any(dim=1)[0].numpy()  # only where the input was an exact extreme
    assert ((noisy == 0) | (noisy == 1)).any(dim=1)[0].numpy()[changed].all()
