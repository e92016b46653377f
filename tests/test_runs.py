"""Straight runs of one extreme (denoiser.models.runs): lines and borders stay under noise, noise is never a run."""

import pytest
import torch

from denoiser.models import UNetConfig, UNetDenoiser
from denoiser.models.runs import decide_runs, on_runs
from denoiser.noise import impulse_mask, salt_and_pepper
from denoiser.runners import ModelDenoiser

HALF, Z = UNetConfig.run_half, UNetConfig.run_z


def _background(shape: tuple[int, ...], *, seed: int) -> torch.Tensor:
    """Genuine values strictly between black and white, as a photo has almost everywhere."""
    return 0.1 + 0.8 * torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _noisy(clean: torch.Tensor, amount: float, *, seed: int) -> torch.Tensor:
    return salt_and_pepper(clean, amount=amount, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("amount", [0.1, 0.3, 0.5])
def test_a_border_and_a_line_survive_noise_and_nothing_else_is_touched(amount: float) -> None:
    clean = _background((4, 1, 96, 160), seed=0)
    clean[..., 0, :] = 0.0  # a one-pixel black border along the top edge, corners included
    clean[..., 1:, 100] = 1.0  # a one-pixel white line from the border down
    noisy = _noisy(clean, amount, seed=1)
    mask = impulse_mask(noisy)
    out, remaining, decided = decide_runs(noisy, mask, half=HALF, z=Z)
    border, line = out[..., 0, :], out[..., 1:, 100]
    assert (border == 0).float().mean() >= 0.99 and (line == 1).float().mean() >= 0.99
    repainted = remaining & ~decided  # the network repaints these; the rest of the border it takes as known
    assert repainted[..., 0, :].float().mean() <= 0.01
    assert torch.equal(decided, mask & (out != noisy))  # decided: the impulses whose value the run set
    off = torch.ones_like(mask)
    off[..., 0, :] = False
    off[..., :, 100] = False
    assert torch.equal(out[off], noisy[off]) and torch.equal(remaining[off], mask[off])


@pytest.mark.parametrize("amount", [0.02, 0.1, 0.3, 0.5, 0.7, 0.9])
def test_noise_alone_is_never_a_run(amount: float) -> None:
    noisy = _noisy(_background((4, 1, 128, 128), seed=2), amount, seed=3)
    on_black, on_white = on_runs(noisy, half=HALF, z=Z)
    assert not on_black.any() and not on_white.any()


@pytest.mark.parametrize("amount", [0.3, 0.5, 0.7])
def test_impulses_of_the_other_kind_in_a_clipped_region_are_not_a_run(amount: float) -> None:
    # A region clipped to black holds nothing but extremes once noisy, so only the density test guards it: its
    # salt must hardly ever pass for a white run (a kept impulse costs the most). The rare exceptions lie near
    # the image's edges, where a side is cut short (seed 3 at amount 0.5 gives 9 values of 262,144, one run).
    for seed in (3, 4):
        noisy = _noisy(torch.zeros(16, 1, 128, 128), amount, seed=seed)
        assert on_runs(noisy, half=HALF, z=Z)[1].float().mean() <= 1e-4


def test_a_grey_strip_between_two_black_regions_is_not_bridged() -> None:
    # Scikit-image's astronaut has one: 13 values of 254 between two clipped blacks. Pepper in the strip sits
    # between two long black runs, but the strip's genuine values say there is no line.
    clean = torch.zeros(2, 1, 64, 128)
    clean[..., 60:73] = 254 / 255
    noisy = _noisy(clean, 0.3, seed=5)
    on_black, _ = on_runs(noisy, half=HALF, z=Z)
    assert not on_black[..., 60:73].any()


def test_the_verdict_reaches_half_and_no_further() -> None:
    clean = _background((1, 1, 4 * HALF + 1, 4 * HALF + 1), seed=6)
    c = 2 * HALF
    clean[..., c, :] = 0.0
    clean[..., c, c + 1:c + 3] = 0.5  # the two values between that a side may hold
    assert on_runs(clean, half=HALF, z=Z)[0][..., c, c]
    third = clean.clone()
    third[..., c, c + HALF] = 0.5  # one more at the side's far end: no longer a run
    assert not on_runs(third, half=HALF, z=Z)[0][..., c, c]
    beyond = clean.clone()
    beyond[..., c, c + HALF + 1] = 0.5  # just past it: no change
    assert on_runs(beyond, half=HALF, z=Z)[0][..., c, c]
    # Nothing farther than HALF in any direction counts, whatever it is.
    noisy = _noisy(clean, 0.3, seed=7)
    far = _noisy(_background(clean.shape, seed=8), 0.6, seed=9)
    near = torch.zeros_like(clean, dtype=torch.bool)
    near[..., c - HALF:c + HALF + 1, c - HALF:c + HALF + 1] = True
    mixed = torch.where(near, noisy, far)
    for a, b in zip(on_runs(noisy, half=HALF, z=Z), on_runs(mixed, half=HALF, z=Z)):
        assert torch.equal(a[..., c, c], b[..., c, c])


def test_the_unet_keeps_a_border_under_noise_and_tiles_agree_with_the_whole() -> None:
    torch.manual_seed(0)
    model = UNetDenoiser(UNetConfig(widths=(8, 16), blocks=(1, 1))).eval()
    torch.nn.init.normal_(model.tail.weight, std=0.05)  # an untrained tail is zero: make the output depend on context
    clean = _background((1, 1, 300, 280), seed=10)
    clean[..., -1, :] = 0.0  # a black edge along the bottom
    clean[..., 150, :] = 1.0  # a white line across the tile boundaries
    noisy = _noisy(clean, 0.4, seed=11)
    tiled = ModelDenoiser(model, tile_size=128, colour_fill=False, keep_detail=False).denoise_batch(noisy)
    with torch.inference_mode():
        whole = model(noisy).clamp(0, 1)
    assert (tiled - whole).abs().max().item() < 1e-3
    assert (whole[..., -1, :] == 0).float().mean() >= 0.99 and (whole[..., 150, :] == 1).float().mean() >= 0.99
    without = UNetDenoiser(UNetConfig(widths=(8, 16), blocks=(1, 1), run_half=0)).eval()
    without.load_state_dict(model.state_dict())
    with torch.inference_mode():
        assert (without(noisy)[..., -1, :] == 0).float().mean() < 0.1  # the exact rule alone repaints the edge


@pytest.mark.parametrize("per_channel", [False, True])
def test_the_shipped_default_keeps_a_colour_photos_black_edge_under_noise(per_channel: bool) -> None:
    # Issue 9's case: a photo with a one-pixel black line along one edge. The colour fill must leave the
    # run's verdicts alone (a value turned from salt to black is no estimate to redo).
    from denoiser import load_denoiser
    from denoiser.imaging import array_to_tensor, tensor_to_array

    clean = _background((3, 96, 128), seed=12)
    clean[:, :, 0] = 0.0
    image = (clean.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()  # (C, H, W) -> (H, W, C)
    noisy = salt_and_pepper(array_to_tensor(image).unsqueeze(0), amount=0.4, per_channel=per_channel,
                            generator=torch.Generator().manual_seed(13))
    noisy = tensor_to_array(noisy[0], like=image)
    for denoiser in (load_denoiser(device="cpu"), load_denoiser(device="cpu", colour_fill=False)):
        out = denoiser.denoise(noisy)
        assert out.shape == image.shape and (out[:, 0] == 0).all(axis=-1).mean() >= 0.99
