"""denoiser.sparse: clean and lightly hit images keep their genuine black and white; noisy ones are unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from denoiser import load_denoiser
from denoiser.imaging import array_to_tensor, tensor_to_array
from denoiser.noise import salt_and_pepper
from denoiser.models import UNetDenoiser
from denoiser.sparse import (EVERY, MAX_SHARE, beside_detail, kept_extremes, noise_like_clusters, small_clusters,
                             small_share)
from denoiser.structure import structure_set

from conftest import psnr_u8


def test_small_clusters_are_lone_and_paired_extremes_only() -> None:
    x = torch.full((1, 1, 9, 9), 0.5)
    x[0, 0, 1, 1] = 0.0  # alone
    x[0, 0, 1, 5], x[0, 0, 2, 6] = 1.0, 1.0  # a diagonal pair
    x[0, 0, 5, 1:4] = 0.0  # three in a row: a line, kept
    x[0, 0, 7, 6], x[0, 0, 7, 7], x[0, 0, 8, 7] = 1.0, 1.0, 1.0  # an L of three
    x[0, 0, 8, 0] = 1.0  # alone in a corner: nothing beyond the edge counts
    x[0, 0, 4, 7], x[0, 0, 4, 8] = 0.0, 1.0  # a 0 beside a 1 is alone twice: values only pair with their own
    expected = torch.zeros_like(x, dtype=torch.bool)
    for y, xx in [(1, 1), (1, 5), (2, 6), (8, 0), (4, 7), (4, 8)]:
        expected[0, 0, y, xx] = True
    assert torch.equal(small_clusters(x), expected)


def test_channels_and_images_are_read_apart() -> None:
    x = torch.full((2, 3, 6, 6), 0.4)
    x[0, 0, 2, 2] = 1.0
    x[0, 1, 2, 3] = 1.0  # beside it, but in another channel: both alone
    x[1, :, 2, 2] = 0.0  # a black pixel, all channels: alone in each
    found = small_clusters(x)
    assert found.sum().item() == 5 and found[0, 0, 2, 2] and found[0, 1, 2, 3] and found[1, :, 2, 2].all()


def test_clean_and_lightly_hit_photos_keep_their_extremes_and_noisy_ones_do_not(photo: np.ndarray) -> None:
    clean = array_to_tensor(photo).unsqueeze(0)  # (C, H, W) -> (1, C, H, W)
    amounts = (0.002, 0.03, 0.3, 0.9, 0.95)
    batch = torch.cat([clean] + [salt_and_pepper(clean, amount=a, generator=torch.Generator().manual_seed(0))
                                 for a in amounts])
    share = small_share(batch)
    assert share[0] < MAX_SHARE / 5 and share[1] < MAX_SHARE and share[2] > 2 * MAX_SHARE
    assert share[-1] < MAX_SHARE  # dense noise leaves few small clusters: the exact rule's share tells it apart
    kept = kept_extremes(batch, flagged=UNetDenoiser().impulses)
    light = kept.flatten(1).any(dim=1)  # (B, C, H, W) -> (B, CHW) -> (B,)
    assert light.tolist() == [True, True, False, False, False, False]
    assert torch.equal(kept[:2], ~noise_like_clusters(batch[:2]))
    assert kept_extremes(batch[2:4], flagged=UNetDenoiser().impulses) is None  # on the CPU: nothing to keep


def _specks(background: torch.Tensor, *, white: int, black: int, seed: int = 0) -> torch.Tensor:
    """`background` (1, 1, H, W) with lone white and black values at spots of a grid three pixels apart."""
    x = background.clone()
    h, w = x.shape[-2:]
    spots = torch.stack(torch.meshgrid(torch.arange(1, h - 1, 3), torch.arange(1, w - 1, 3), indexing="ij"), -1)
    spots = spots.reshape(-1, 2)  # (rows, cols, 2) -> (spots, 2)
    spots = spots[torch.randperm(len(spots), generator=torch.Generator().manual_seed(seed))]
    for i, (y, xx) in enumerate(spots[: white + black].tolist()):
        x[0, 0, y, xx] = 1.0 if i < white else 0.0
    return x


def test_specks_of_one_polarity_are_detail_where_the_other_would_show() -> None:
    grey = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    stars = _specks(grey, white=40, black=0)
    assert small_clusters(stars).sum().item() == 40
    assert not noise_like_clusters(stars).any()  # 40 lone whites where 40 lone blacks could show, and none do
    for noisy in (_specks(grey, white=40, black=40), _specks(grey, white=40, black=1)):
        assert torch.equal(noise_like_clusters(noisy), small_clusters(noisy))  # both sides: noise
    few = _specks(grey, white=20, black=0)  # too few for the missing side to mean anything
    assert torch.equal(noise_like_clusters(few), small_clusters(few))
    night = _specks(torch.zeros(1, 1, 64, 64), white=40, black=0)
    assert torch.equal(noise_like_clusters(night), small_clusters(night))  # no room for pepper: salt or stars?


def _page_with_an_i(*, pepper: int) -> torch.Tensor:
    """A white (1, 1, 48, 48) page with an "i" (a stem and its dot two rows above) and `pepper` lone blacks
    on open page, at least 8 pixels from the letter."""
    x = torch.ones(1, 1, 48, 48)
    x[0, 0, 10:20, 10] = 0.0  # the stem
    x[0, 0, 8, 10] = 0.0  # its dot, a lone black 2 pixels above it
    for i in range(pepper):
        x[0, 0, 30 + 3 * (i % 5), 28 + 4 * (i // 5)] = 0.0
    return x


def test_specks_beside_detail_are_kept_unless_the_image_shows_noise_away_from_it() -> None:
    clean = _page_with_an_i(pepper=0)
    assert small_clusters(clean).sum().item() == 1
    assert not noise_like_clusters(clean).any()  # the dot of the "i" stays
    one = _page_with_an_i(pepper=1)  # one speck away from the letter: noise would show about 0.1 beside it
    assert noise_like_clusters(one).sum().item() == 1 and not noise_like_clusters(one)[0, 0, 8, 10]
    noisy = _page_with_an_i(pepper=10)  # ten away: noise would show about 0.35 beside the letter
    assert torch.equal(noise_like_clusters(noisy), small_clusters(noisy))
    extreme = noisy <= 0
    small = small_clusters(noisy)
    count = F.conv2d(extreme.float(), torch.ones(1, 1, 3, 3), padding=1).to(torch.uint8) - extreme.to(torch.uint8)
    assert not beside_detail(extreme, small, count).any()


def test_a_clean_page_of_text_comes_back_unchanged() -> None:
    images = {s.name: s.image for s in structure_set(size=256) if s.kind == "text"}
    page = array_to_tensor(images["text on a page"]).unsqueeze(0)  # (C, H, W) -> (1, C, H, W)
    assert small_clusters(page).any()  # dots of "i", "j", colons and full stops, alone on the page
    denoiser = load_denoiser(device="cpu")
    assert np.array_equal(denoiser.denoise(images["text on a page"]), images["text on a page"])
    assert psnr_u8(denoiser.denoise(images["text colour"]), images["text colour"]) > 50


def test_a_clean_star_field_comes_back_unchanged_and_its_light_noise_is_still_found() -> None:
    sky = next(s.image for s in structure_set(size=128) if s.name == "star field")
    denoiser = load_denoiser(device="cpu")
    assert np.array_equal(denoiser.denoise(sky), sky)
    x = salt_and_pepper(array_to_tensor(sky).unsqueeze(0), amount=0.004, generator=torch.Generator().manual_seed(0))
    # Balanced noise brings lone blacks onto the sky, so the stars can no longer be told from salt.
    assert torch.equal(noise_like_clusters(x), small_clusters(x))
    noisy = tensor_to_array(x[0], like=sky)
    salt = (noisy == 255).all(axis=-1) & (sky < 128).all(axis=-1)  # salt on the dark sky: a star to look at
    assert salt.sum() > 20
    assert np.abs(denoiser.denoise(noisy)[salt].astype(int) - sky[salt]).max() < 40  # repainted as sky


def test_tall_images_are_read_in_bands_that_see_their_clusters_whole() -> None:
    x = torch.full((1, 1, 4 * EVERY, 40), 0.5)
    rows = torch.arange(4 * EVERY)
    banded = rows % EVERY < 16
    x[0, 0, banded, 5] = 0.0  # a vertical line through every band: no small clusters, even at the band's edges
    x[0, 0, 10, 20] = 1.0  # one lone value in a band, and one between bands (not read)
    x[0, 0, 30, 20] = 1.0
    assert small_share(x).item() == pytest.approx(1 / (4 * 16 * 40))
    x[0, 0, 15, 30], x[0, 0, 16, 31] = 0.0, 0.0  # a pair across a band's last row: counted once, as a pair
    assert small_share(x).item() == pytest.approx(2 / (4 * 16 * 40))


@pytest.fixture(scope="module")
def drawings() -> dict[str, np.ndarray]:
    """Four of the structure set's images at 96x96: exact black or white lines, a border and strokes."""
    names = ("lines colour", "wires on sky", "black edge grey", "line art")
    return {s.name: s.image for s in structure_set(size=96) if s.name in names}


def test_the_default_model_hands_clean_drawings_back_unchanged(drawings: dict[str, np.ndarray]) -> None:
    keeping, repainting = load_denoiser(device="cpu"), load_denoiser(device="cpu", keep_detail=False)
    for name, image in drawings.items():
        assert not small_clusters(array_to_tensor(image).unsqueeze(0)).any(), name
        assert np.array_equal(keeping.denoise(image), image), name
        if name == "black edge grey":  # a border is a straight run, which the exact rule keeps on its own
            assert np.array_equal(repainting.denoise(image), image), name  # (denoiser.models.runs)
        else:  # the exact rule alone erases the slanted lines and the strokes
            assert psnr_u8(repainting.denoise(image), image) < 40, name


def test_lone_impulses_on_a_drawing_are_repainted_and_its_strokes_kept(drawings: dict[str, np.ndarray]) -> None:
    image = drawings["line art"]  # white page, black strokes
    page = (image == 255).all(axis=-1)
    open_page = torch.from_numpy(page)[None, None].float()  # (H, W) -> (1, 1, H, W)
    open_page = -F.max_pool2d(-open_page, 5, stride=1, padding=2)[0, 0].numpy() > 0  # 2 px from any stroke
    spots = np.argwhere(open_page)[np.random.default_rng(0).choice(open_page.sum(), 12, replace=False)]
    noisy = image.copy()
    noisy[spots[:, 0], spots[:, 1]] = 0  # pepper on the open page
    noisy[spots[0, 0], spots[0, 1] + 1] = 0  # one of them a pair
    hit = np.zeros(page.shape, dtype=bool)
    hit[spots[:, 0], spots[:, 1]] = hit[spots[0, 0], spots[0, 1] + 1] = True
    out = load_denoiser(device="cpu").denoise(noisy)
    assert np.abs(out[hit].astype(int) - 255).max() < 40  # repainted as page
    assert np.array_equal(out[~hit], image[~hit])  # every other value, strokes included, is its own


def test_each_image_of_a_batch_is_read_on_its_own(drawings: dict[str, np.ndarray], photo: np.ndarray) -> None:
    gray = array_to_tensor(drawings["black edge grey"]).unsqueeze(0)  # (C, H, W) -> (1, C, H, W)
    noisy = salt_and_pepper(gray, amount=0.3, generator=torch.Generator().manual_seed(1))
    batch = torch.cat([gray, noisy])
    out = load_denoiser(device="cpu").denoise_batch(batch)
    assert torch.equal(out[0], gray[0])
    assert torch.equal(out[1:], load_denoiser(device="cpu", keep_detail=False).denoise_batch(noisy))


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_tiles_agree_with_the_whole_image_on_a_lightly_hit_photo(photo: np.ndarray, backend: str) -> None:
    pytest.importorskip("onnxruntime") if backend == "onnx" else None
    x = salt_and_pepper(array_to_tensor(photo).unsqueeze(0), amount=0.004, generator=torch.Generator().manual_seed(2))
    assert small_share(x).item() < MAX_SHARE
    whole = load_denoiser(device="cpu", backend=backend).denoise_batch(x)
    tiled = load_denoiser(device="cpu", backend=backend, tile_size=64).denoise_batch(x)
    assert (whole - tiled).abs().max().item() <= 1e-3
    changed = (whole != x)
    assert 0 < changed.float().mean().item() < 0.01  # the lone impulses, nothing else
    clean = array_to_tensor(photo).unsqueeze(0)
    before = psnr_u8(tensor_to_array(x[0], like=photo), photo)
    assert psnr_u8(tensor_to_array(whole[0], like=photo), photo) > before + 15
    assert torch.equal(whole[~changed], x[~changed]) and not torch.equal(clean, x)
