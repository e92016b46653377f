"""The generated structure (denoiser.structure): every drawer on every image type, masks, determinism, the set."""

import numpy as np
import pytest
import torch

from denoiser import structure
from denoiser.structure import STRUCTURES, draw_border, draw_clipped, draw_random_structure, draw_star_field

DRAWERS = sorted(STRUCTURES)
# The drawers that paint exact black or white by default: what a switching denoiser takes for impulses.
EXTREME_KINDS = ("lines", "borders", "text", "line art")


def grey_photo(shape: tuple[int, ...] = (64, 80, 3), seed: int = 0) -> np.ndarray:
    return structure._u8(structure.smooth_background(shape[0], shape[1], generator=np.random.default_rng(seed),
                                                     channels=shape[2] if len(shape) == 3 else 1))


def _as_hwc_u8(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.permute(1, 2, 0).numpy()  # (C, H, W) -> (H, W, C)
    if image.dtype != np.uint8:
        image = (image * 255 + 0.5).astype(np.uint8)
    return image[..., None] if image.ndim == 2 else image  # (H, W) -> (H, W, 1)


@pytest.mark.parametrize("kind", DRAWERS)
@pytest.mark.parametrize("form", ["u8 rgb", "u8 grey", "float32 rgb", "tensor float", "tensor u8"])
def test_drawer_keeps_type_shape_and_draws_only_inside_its_mask(kind: str, form: str) -> None:
    base = grey_photo((64, 80) if form == "u8 grey" else (64, 80, 3))
    if form.startswith("tensor"):
        image = torch.from_numpy(base).permute(2, 0, 1).contiguous()  # (H, W, C) -> (C, H, W)
        image = image.float() / 255 if form == "tensor float" else image
    else:
        image = base.astype(np.float32) / 255 if form == "float32 rgb" else base
    before = image.clone() if isinstance(image, torch.Tensor) else image.copy()
    out, mask = STRUCTURES[kind](image, generator=np.random.default_rng(3))
    assert type(out) is type(image) and out.shape == image.shape and out.dtype == image.dtype
    assert (image == before).all()  # the input is never modified
    assert mask.dtype == bool and mask.shape == (64, 80) and mask.any()
    got, clean = _as_hwc_u8(out), _as_hwc_u8(image)
    changed = (got != clean).any(axis=-1)
    assert changed.sum() >= 0.5 * mask.sum()  # the mask is what was drawn, not a guess
    if kind == "clipped":  # its soft edges change pixels around the saturated ones the mask holds
        assert changed[mask].all()
    else:
        assert (got[~mask] == clean[~mask]).all()
    if kind in EXTREME_KINDS:
        drawn = got[mask]
        assert ((drawn == 0).all(axis=-1) | (drawn == 255).all(axis=-1)).all()


@pytest.mark.parametrize("kind", DRAWERS)
def test_same_seed_same_drawing_with_numpy_or_torch_generators(kind: str) -> None:
    base = grey_photo()
    draws = [STRUCTURES[kind](base, generator=g)
             for g in (np.random.default_rng(5), np.random.default_rng(5), np.random.default_rng(6),
                       torch.Generator().manual_seed(5), torch.Generator().manual_seed(5))]
    (a, ma), (b, mb), (c, mc), (t1, mt1), (t2, mt2) = draws
    assert (a == b).all() and (ma == mb).all()
    assert (t1 == t2).all() and (mt1 == mt2).all()
    assert not ((a == c).all() and (ma == mc).all())


def test_border_draws_exactly_the_named_one_pixel_edges() -> None:
    out, mask = draw_border(grey_photo(), generator=np.random.default_rng(0), sides=("bottom", "left"), value=0.0)
    expected = np.zeros((64, 80), dtype=bool)
    expected[-1, :] = True
    expected[:, 0] = True
    assert (mask == expected).all()
    assert (out[mask] == 0).all()
    with pytest.raises(ValueError, match="unknown sides"):
        draw_border(grey_photo(), generator=np.random.default_rng(0), sides=("middle",))


def test_lines_are_one_pixel_wide() -> None:
    """A one-pixel line has no 2x2 block of its own pixels, unless two lines cross there."""
    for seed in range(5):
        _, mask = structure.draw_lines(grey_photo((96, 96, 3)), generator=np.random.default_rng(seed), count=1)
        blocks = mask[:-1, :-1] & mask[1:, :-1] & mask[:-1, 1:] & mask[1:, 1:]
        assert not blocks.any()
        assert mask.sum() >= 96  # edge to edge


def test_star_field_makes_isolated_stars_at_the_density_asked() -> None:
    sky = np.zeros((128, 128, 3), dtype=np.uint8)
    out, mask = draw_star_field(sky, generator=np.random.default_rng(0), density=0.01)
    assert 0.008 <= mask.mean() <= 0.02  # one in eight stars is five pixels wide
    assert (out[mask] > 130).all() and (out[~mask] == 0).all()
    assert (out[mask] == 255).any() and (out[mask] < 255).any()
    with pytest.raises(ValueError, match="density"):
        draw_star_field(sky, generator=np.random.default_rng(0), density=0.5)


def test_clipped_regions_saturate_pixels_that_were_not_saturated() -> None:
    base = grey_photo((96, 96, 3))
    assert base.min() > 0 and base.max() < 255
    out, mask = draw_clipped(base, generator=np.random.default_rng(1), count=2)
    assert mask.sum() > 50
    assert ((out[mask] == 0) | (out[mask] == 255)).any(axis=-1).all()


def test_random_structure_picks_from_the_kinds_given() -> None:
    base = grey_photo()
    out, mask = draw_random_structure(base, generator=np.random.default_rng(0), kinds=("borders",))
    assert mask[0].all() or mask[-1].all() or mask[:, 0].all() or mask[:, -1].all()
    with pytest.raises(ValueError, match="unknown structure kinds"):
        draw_random_structure(base, generator=np.random.default_rng(0), kinds=("clouds",))


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4), np.int32),
                                 torch.zeros(2, 4, 4), [[0, 1], [1, 0]]])
def test_bad_images_get_a_clear_error(bad) -> None:
    with pytest.raises(ValueError, match="expected|shaped"):
        structure.draw_lines(bad, generator=np.random.default_rng(0))


def test_bad_generator_gets_a_clear_error() -> None:
    with pytest.raises(ValueError, match="generator"):
        structure.draw_lines(grey_photo(), generator=0)


def test_structure_set_is_fixed_and_covers_every_kind() -> None:
    first, again = structure.structure_set(size=64), structure.structure_set(size=64)
    assert [s.name for s in first] == [s.name for s in again]
    assert all((a.image == b.image).all() and (a.mask == b.mask).all() for a, b in zip(first, again))
    assert {s.kind for s in first} == set(STRUCTURES)
    for s in first:
        assert s.image.dtype == np.uint8 and s.image.shape[:2] == (64, 64) and s.mask.shape == (64, 64)
        assert s.mask.any()
    # On the photo-like backgrounds, exact black and white come only from the structure.
    for s in first:
        if s.kind in ("lines", "borders") and s.name != "wires on sky" or s.name == "text colour":
            hwc = s.image[..., None] if s.image.ndim == 2 else s.image  # (H, W) -> (H, W, 1)
            extreme = ((hwc == 0) | (hwc == 255)).any(axis=-1)
            assert not (extreme & ~s.mask).any(), s.name
    assert not (structure.structure_set(size=64, seed=1)[0].image == first[0].image).all()
