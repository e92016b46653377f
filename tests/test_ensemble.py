"""The geometric self-ensemble: views and their inverses, the pixel budget, and runners that average views."""

import pytest
import torch
from torch import nn

from denoiser import ensemble, load_denoiser
from denoiser.architectures import ARCHITECTURES, build_model
from denoiser.checkpoint import save_checkpoint
from denoiser.inference import IMPULSE_CHECKPOINT, MOVED_VIEWS
from denoiser.noise import salt_and_pepper
from denoiser.runners import ByImpulses, ModelDenoiser


@pytest.mark.parametrize("k", range(ensemble.VIEWS))
def test_unview_undoes_view_on_non_square_batches(k: int) -> None:
    x = torch.rand(2, 3, 5, 7)
    seen = ensemble.view(x, k)
    assert seen.shape == ((2, 3, 7, 5) if k & 4 else (2, 3, 5, 7))
    assert torch.equal(ensemble.unview(seen, k), x)


def test_the_eight_views_differ_and_two_views_are_the_image_and_its_transpose() -> None:
    x = torch.rand(1, 1, 6, 6)
    views = [ensemble.view(x, k) for k in range(ensemble.VIEWS)]
    assert all(not torch.equal(views[i], views[j]) for i in range(8) for j in range(i))
    assert sorted(ensemble.ORDER) == list(range(ensemble.VIEWS))
    first_two = [ensemble.view(x, k) for k in ensemble.ORDER[:2]]
    assert torch.equal(first_two[0], x) and torch.equal(first_two[1], x.transpose(-1, -2))
    with pytest.raises(ValueError, match="view"):
        ensemble.view(x, 8)


@pytest.mark.parametrize(("size", "most", "expected"), [
    ((32, 32), 8, 8), ((321, 481), 8, 8), ((512, 512), 8, 4), ((512, 768), 8, 3), ((1024, 1024), 8, 1),
    ((2048, 2048), 8, 1), ((32, 32), 2, 2), ((32, 32), 1, 1),
])
def test_passes_spend_the_pixel_budget(size: tuple, most: int, expected: int) -> None:
    assert ensemble.passes(*size, most=most) == expected


def test_passes_refuse_counts_out_of_range() -> None:
    for most in (0, 9):
        with pytest.raises(ValueError, match="most"):
            ensemble.passes(8, 8, most=most)


def test_ensembled_averages_the_views_answers_turned_back() -> None:
    """With an answer that depends on orientation (a lopsided kernel), the mean of the eight answers turned back;
    with one that does not (pointwise), the answer itself."""
    kernel = torch.arange(9.0).reshape(1, 1, 3, 3)

    def lopsided(parts: list[torch.Tensor]) -> list[torch.Tensor]:
        return [nn.functional.conv2d(p, kernel, padding=1) for p in parts]

    parts = [torch.rand(2, 1, 6, 9), torch.rand(1, 1, 4, 4)]
    got = ensemble.ensembled(lopsided, parts, count=8)
    for part, answer in zip(parts, got):
        expected = torch.stack([ensemble.unview(lopsided([ensemble.view(part, k)])[0], k) for k in range(8)]).mean(0)
        assert answer.shape == part.shape and torch.allclose(answer, expected, atol=1e-5)
        assert not torch.allclose(answer, lopsided([part])[0], atol=1e-3)
    square = ensemble.ensembled(lambda many: [p * p for p in many], parts, count=5)
    assert all(torch.allclose(s, p * p) for s, p in zip(square, parts))
    assert ensemble.ensembled(lopsided, parts, count=1)[0].equal(lopsided(parts)[0])


def test_ensembled_never_writes_into_an_answer_that_is_its_input() -> None:
    part = torch.rand(1, 1, 4, 6)
    kept = part.clone()
    (mean,) = ensemble.ensembled(lambda many: list(many), [part], count=8)  # a core that returns what it is given
    assert torch.equal(part, kept) and torch.allclose(mean, kept)


@pytest.fixture
def tiny_detect_fill() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("detect_fill", ARCHITECTURES["detect_fill"].tiny)
    for p in model.refiner.parameters():  # an untrained refiner adds zero: make it depend on orientation
        nn.init.normal_(p, std=0.1)
    return model.eval()


def test_a_runner_with_views_returns_the_mean_of_the_models_answers_on_each_view(tiny_detect_fill: nn.Module) -> None:
    noisy = salt_and_pepper(torch.rand(2, 3, 32, 48), amount=0.3, generator=torch.Generator().manual_seed(0))
    one, eight = ModelDenoiser(tiny_detect_fill), ModelDenoiser(tiny_detect_fill, views=8)
    # Sizes on the model's multiple: no padding. The answers are averaged as the model gives them, then clamped
    # to [0, 1] as one answer would be.
    with torch.inference_mode():
        answers = [ensemble.unview(tiny_detect_fill(ensemble.view(noisy, k)), k) for k in range(8)]
    expected = torch.stack(answers).mean(0).clamp(0, 1)
    got = eight.denoise_batch(noisy)
    assert (got - expected).abs().max().item() < 1e-5
    assert (got - one.denoise_batch(noisy)).abs().max().item() > 1e-3
    for views in (0, 9):
        with pytest.raises(ValueError, match="views"):
            ModelDenoiser(tiny_detect_fill, views=views)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_views_tiled_match_views_whole_on_both_backends(tiny_detect_fill: nn.Module, tmp_path, monkeypatch,
                                                        backend: str) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = save_checkpoint(tiny_detect_fill, tmp_path / "pair")
    noisy = salt_and_pepper(torch.rand(1, 3, 70, 45), amount=0.3, generator=torch.Generator().manual_seed(1))
    tiled = load_denoiser(folder, device="cpu", backend=backend, tile_size=32, views=8)
    whole = load_denoiser(folder, device="cpu", backend="torch", tile_size=128, views=8)
    assert tiled.backend == backend
    assert (tiled.denoise_batch(noisy) - whole.denoise_batch(noisy)).abs().max().item() <= 1e-3


def test_the_default_model_averages_views_of_its_moved_model_and_the_impulse_unet_alone_does_not() -> None:
    default = load_denoiser(device="cpu", backend="torch")
    assert isinstance(default, ByImpulses) and default.moved.views == MOVED_VIEWS > 1
    assert default.exact.views == 1
    assert load_denoiser(IMPULSE_CHECKPOINT, device="cpu", backend="torch").views == 1
    assert load_denoiser(device="cpu", backend="torch", views=2).moved.views == 2  # the caller's choice wins
