"""Contracts every architecture keeps, parametrized over `denoiser.architectures.ARCHITECTURES` as timm's
model tests are over its registry; then what is particular to the article's model and the U-Net."""

import json
from dataclasses import asdict

import pytest
import torch
from huggingface_hub import ModelCard

from denoiser.architectures import ARCHITECTURES, build_model, wrap_model
from denoiser.checkpoint import load_model, read_card, save_checkpoint
from denoiser.interface import Denoiser
from denoiser.models import ArticleAutoencoder, ArticleConfig, DenoisingModel, UNetConfig, UNetDenoiser
from denoiser.noise import impulse_mask, salt_and_pepper

NAMES = sorted(ARCHITECTURES)
WITH_RADIUS = [name for name in NAMES if hasattr(ARCHITECTURES[name].model, "receptive_radius")]
# Gradients cannot see through detect_fill's hard mask, so its detector's reach is invisible to the gradient
# measure below; its bound is checked from its parts', which are measured (and tiling covers it end to end).
MEASURED_RADIUS = [name for name in WITH_RADIUS if name != "detect_fill"]


def _perturbed(model: DenoisingModel) -> DenoisingModel:
    """Every weight nudged, so layers initialized to zero (the U-Net's tail) take part in what is tested."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _noisy(shape: tuple[int, ...], *, amount: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return salt_and_pepper(torch.rand(shape, generator=g) * 0.8 + 0.1, amount=amount, generator=g)


@pytest.fixture(params=NAMES)
def model(request: pytest.FixtureRequest) -> DenoisingModel:
    torch.manual_seed(0)
    return _perturbed(build_model(request.param, ARCHITECTURES[request.param].tiny))


# ----------------------------------------------------------------------------- every architecture


@pytest.mark.parametrize("name", NAMES)
def test_table_entry_builds_its_model_from_the_tiny_config(name: str) -> None:
    arch = ARCHITECTURES[name]
    model = build_model(name, arch.tiny)
    assert type(model) is arch.model and model.architecture == name  # what config.json stores, and looks up
    assert model.config == arch.config(**arch.tiny)
    assert arch.config(**json.loads(json.dumps(asdict(model.config)))) == model.config  # config.json round trip
    assert 0 < model.parameter_count() < 100_000  # tiny: the contracts run in milliseconds


def test_forward_keeps_shape_and_treats_each_image_alone(model: DenoisingModel) -> None:
    x = _noisy((3, 1, 32, 32))
    with torch.no_grad():
        out = model(x)
        one_by_one = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
        again = model(x)
    assert out.shape == x.shape and out.dtype == x.dtype and bool(torch.isfinite(out).all())
    assert torch.allclose(out, one_by_one, atol=1e-5)  # nothing leaks between the images of a batch
    assert torch.equal(out, again)  # eval mode is deterministic
    assert not torch.allclose(out, x)  # it does something


def test_wrap_model_gives_the_architectures_denoiser(model: DenoisingModel) -> None:
    with torch.no_grad():
        native = _noisy((2, 1, 32, 32))
        expected = model(native).clamp(0, 1)
    denoiser = wrap_model(model)
    assert isinstance(denoiser, Denoiser) and type(denoiser) is ARCHITECTURES[model.architecture].runner
    assert torch.allclose(denoiser.denoise_batch(native), expected, atol=1e-5)  # the network's own answer
    x = _noisy((2, 3, 40, 48), seed=1)  # colour, and not the native size
    out = denoiser.denoise_batch(x)
    assert out.shape == x.shape and out.device == x.device
    assert bool((out >= 0).all() and (out <= 1).all())


@pytest.mark.parametrize("name", MEASURED_RADIUS)
def test_receptive_radius_bounds_the_real_one(name: str) -> None:
    model = _perturbed(build_model(name, ARCHITECTURES[name].tiny))
    if getattr(model.config, "run_half", 0):
        model.config.run_half = 0  # a threshold has no gradient; test_runs.py measures the runs' reach
    radius = model.receptive_radius
    size = 2 * radius + 32
    x = _noisy((1, 1, size, size), amount=0.9)
    c = size // 2
    x[0, 0, c, c] = 0.0  # an impulse at the centre, so the output there depends on its neighbourhood
    x.requires_grad_(True)
    model(x)[0, 0, c, c].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    reach = max((rows - c).abs().max().item(), (cols - c).abs().max().item())
    assert radius // 2 < reach <= radius


# ----------------------------------------------------------------------------- the article's model and the U-Net


def test_article_model_has_the_articles_parameter_count() -> None:
    assert ArticleAutoencoder().parameter_count() == 8_340_617


def test_article_layers_match_the_article() -> None:
    m = ArticleAutoencoder()
    convs = [l for l in m.encoder if isinstance(l, torch.nn.Conv2d)]
    deconvs = [l for l in m.decoder_conv if isinstance(l, torch.nn.ConvTranspose2d)]
    assert len(convs) == 6 and len(deconvs) == 6
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64]
    assert m.encoder[-2].out_features == 1000
    assert all(torch.all(c.bias == 0.01) for c in convs)  # the article's init_weights
    codes = m.encode(torch.rand(3, 1, 32, 32))
    assert codes.shape == (3, 1000)


def test_article_model_refuses_other_sizes() -> None:
    with pytest.raises(ValueError, match="32, 32"):
        ArticleAutoencoder()(torch.rand(1, 1, 40, 40))


@pytest.mark.parametrize("shape", [(1, 1, 37, 53), (2, 3, 32, 32), (1, 3, 9, 130)])
def test_unet_takes_any_size_and_colour_channel_by_channel(shape: tuple) -> None:
    torch.manual_seed(0)
    m = _perturbed(UNetDenoiser(UNetConfig(widths=(8, 16, 32), blocks=(1, 1, 1))))
    x = _noisy(shape)
    with torch.no_grad():
        out = m(x)
        per_channel = torch.cat([m(x[:, c:c + 1]) for c in range(shape[1])], dim=1)
    assert out.shape == shape
    kept = (x > 0) & (x < 1)
    assert torch.equal(out[kept], x[kept])  # padding to a multiple of 8 and cropping back moves no pixel
    assert torch.allclose(out, per_channel, atol=1e-5)


def test_unet_changes_only_impulse_pixels() -> None:
    torch.manual_seed(0)
    m = UNetDenoiser(UNetConfig(widths=(8, 16), blocks=(1, 1)))
    torch.nn.init.normal_(m.tail.weight, std=0.1)
    clean = torch.rand(2, 1, 40, 40) * 0.8 + 0.1
    noisy = salt_and_pepper(clean, amount=0.4, generator=torch.Generator().manual_seed(0))
    out = m(noisy)
    kept = (noisy > 0) & (noisy < 1)
    assert torch.equal(out[kept], noisy[kept])
    assert not torch.equal(out[~kept], noisy[~kept])


def test_unet_receptive_radius_bounds_the_real_one() -> None:
    torch.manual_seed(0)
    m = UNetDenoiser(UNetConfig())
    torch.nn.init.normal_(m.tail.weight, std=0.1)
    x = salt_and_pepper(torch.rand(1, 1, 256, 256), amount=0.9, generator=torch.Generator().manual_seed(0))
    x[0, 0, 128, 128] = 0.0  # an impulse at the centre, so the output there depends on its neighbourhood
    x.requires_grad_(True)
    # The network's fill, before the output's clamp (which has no gradient where it bites); the mask's own reach
    # is a threshold's, measured in tests/test_runs.py.
    m.fill(x, m.impulses(x).to(x.dtype))[0, 0, 128, 128].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    reach = max((rows - 128).abs().max().item(), (cols - 128).abs().max().item())
    assert 32 < reach <= m.fill_radius + m.config.saturation_window // 2 <= m.receptive_radius


@pytest.mark.parametrize("half", [False, True])
def test_save_then_load_gives_identical_outputs(model, tmp_path, half: bool) -> None:
    if half:  # fp16 storage: round the weights first so the round trip is exact
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    save_checkpoint(model, tmp_path / "ckpt", card=ModelCard("---\nlicense: mit\n---\n# card\n"), half=half)
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["architecture"] == model.architecture and meta["format_version"] == 1
    loaded = load_model(tmp_path / "ckpt")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert read_card(tmp_path / "ckpt").data.license == "mit"
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_loading_refuses_broken_checkpoints(tmp_path) -> None:
    save_checkpoint(ArticleAutoencoder(ArticleConfig(channels=4, latent_dim=8)), tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "config.json").read_text())
    (tmp_path / "a" / "config.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="format 99"):
        load_model(tmp_path / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_model(tmp_path / "empty")
    with pytest.raises(ValueError, match="neither a checkpoint folder"):
        load_model(tmp_path / "missing")
    with pytest.raises(ValueError, match="neither a checkpoint folder"):
        load_model("checkpoints/no-such-model")  # a typo in a local path is not sent to the Hub
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("transformer", {})


def test_unet_keeps_clipped_regions_and_repaints_impulses_inside_them() -> None:
    m = UNetDenoiser(UNetConfig(widths=(8, 16), blocks=(1, 1))).eval()  # untrained: output = first guess
    clean = torch.full((1, 1, 64, 64), 0.5)
    clean[..., :, :32] = 1.0  # a clipped highlight: the whole left half is exactly white
    noisy = salt_and_pepper(clean, amount=0.3, generator=torch.Generator().manual_seed(0))
    mask = m.impulses(noisy)
    white = noisy[..., :, 4:28] == 1
    assert not mask[..., :, 4:28][white].any()  # white pixels in the highlight are not impulses
    assert mask[..., :, 4:28][~white].all()  # the pepper inside it is
    with torch.no_grad():
        out = m(noisy)
    assert torch.allclose(out[..., :, 4:28], torch.ones_like(out[..., :, 4:28]))
    random_noise = salt_and_pepper(torch.full((1, 1, 128, 128), 0.5), amount=0.9,
                                   generator=torch.Generator().manual_seed(1))
    # Dense random noise is still taken as noise, borders included: a chance cluster of one colour passes the
    # test about once in 1,800 pixels in a full window, and small border windows need a larger majority
    # (a plain 60% share in a border-clipped window let 154 of these ~14,700 impulses through).
    missed = (impulse_mask(random_noise) & ~m.impulses(random_noise)).sum().item()
    assert missed <= 30


def test_pad_to_multiple_reflects_where_it_can_and_replicates_where_it_cannot() -> None:
    from denoiser.models.base import pad_to_multiple

    x = torch.arange(12.0).view(1, 1, 3, 4)  # (12,) -> (1, 1, 3, 4)
    reflected = pad_to_multiple(x, 4, mode="reflect")
    assert reflected.shape == (1, 1, 4, 4) and torch.equal(reflected[..., 3, :], x[..., 1, :])
    tiny = torch.arange(2.0).view(1, 1, 1, 2)  # (2,) -> (1, 1, 1, 2): too small to reflect 7 rows
    assert torch.equal(pad_to_multiple(tiny, 8, mode="reflect"), pad_to_multiple(tiny, 8))
    assert pad_to_multiple(x, 1).shape == x.shape


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_unshuffled_conv_traced_as_one_strided_conv_gives_the_same_map(kernel: int) -> None:
    from denoiser.models.base import unshuffled_conv

    torch.manual_seed(0)
    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3 * 4, 8, kernel, padding=kernel // 2)

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return unshuffled_conv(self.conv, t)

    head, x = Head().eval(), torch.rand(2, 3, 12, 10)
    traced = torch.jit.trace(head, (x,))
    assert "pixel_unshuffle" not in str(traced.graph)  # the traced path is the strided convolution
    eager = head(x)
    assert eager.shape == (2, 8, 6, 5)
    assert (traced(x) - eager).abs().max().item() < 1e-5


@pytest.mark.parametrize("size", [(1, 1), (5, 70), (40, 9)])
@pytest.mark.parametrize("reach", [1, 4, 32])
def test_inside_counts_are_window_sums_over_ones_at_any_traced_size(size: tuple, reach: int) -> None:
    from denoiser.models.base import inside_counts

    x = torch.rand(2, 3, *size)
    ones = torch.ones(size[0] + 2 * reach, size[1] + 2 * reach)
    ones[:reach], ones[-reach:], ones[:, :reach], ones[:, -reach:] = 0, 0, 0, 0  # the image, zeros around it
    h, w = size
    # Sums over the `reach` values before and after each position, that position left out, as the function says.
    before = torch.stack([ones[reach, j:j + reach].sum() for j in range(w)]).view(1, 1, 1, w)
    after = torch.stack([ones[reach, j + reach + 1:j + 2 * reach + 1].sum() for j in range(w)]).view(1, 1, 1, w)
    above = torch.stack([ones[i:i + reach, reach].sum() for i in range(h)]).view(1, 1, h, 1)
    below = torch.stack([ones[i + reach + 1:i + 2 * reach + 1, reach].sum() for i in range(h)]).view(1, 1, h, 1)
    for got, want in zip((*inside_counts(x, reach=reach, dim=-1), *inside_counts(x, reach=reach, dim=-2)),
                         (before, after, above, below)):
        assert got.dtype == x.dtype and torch.equal(got, want)
    # Traced on one size, the counts follow another (the exported graph keeps its sizes dynamic).
    traced = torch.jit.trace(lambda t: inside_counts(t, reach=reach, dim=-1)[1], (torch.rand(1, 1, 3, 50),))
    assert torch.equal(traced(x), after)


# ----------------------------------------------------------------------------- detect, then fill


def _pair(**thresholds: float) -> "DetectFill":
    from denoiser.models import DetectFill, ImpulseConfig, ImpulseUNet

    torch.manual_seed(0)
    detector = _perturbed(ImpulseUNet(ImpulseConfig(widths=(8, 16), blocks=(1, 1))))
    filler = _perturbed(UNetDenoiser(UNetConfig(widths=(8, 16), blocks=(1, 1))))
    return DetectFill.assemble(detector, filler, **thresholds).eval()


def test_detect_fill_repaints_what_its_cuts_select_with_the_fillers_own_values() -> None:
    x = _noisy((2, 3, 32, 32), amount=0.3)
    exact = ((x <= 0) | (x >= 1)).float()
    with torch.no_grad():
        every_exact = _pair(exact_threshold=-1e9, other_threshold=1e9)
        expected = every_exact.filler.fill(x.reshape(6, 1, 32, 32), exact.reshape(6, 1, 32, 32)).reshape(2, 3, 32, 32)
        assert torch.equal(every_exact(x), expected)  # (2, 3, 32, 32) folded to (6, 1, 32, 32) and back
        assert torch.equal(_pair(exact_threshold=1e9, other_threshold=1e9)(x), x)  # nothing selected: unchanged
        default_cuts = _pair()
        mask = default_cuts.impulses(x)
        logits, _ = default_cuts.detector.detect_and_fill(x)
    assert torch.equal(mask.bool(), torch.where(exact.bool(), logits > -2.0, logits > 0.0))


def test_detect_fill_is_assembled_not_trained() -> None:
    pair = _pair().train()
    with pytest.raises(ValueError, match="assembled"):
        pair(torch.rand(1, 3, 16, 16))
    assert pair.receptive_radius == pair.detector.receptive_radius + pair.filler.fill_radius


def test_a_fresh_refiner_starts_as_the_pair_and_only_it_learns() -> None:
    from denoiser.models import DetectFill
    from denoiser.models.detect_fill import Refiner, RefinerConfig
    from denoiser.models.unet import trunk_radius

    pair = _pair()
    refiner = Refiner(RefinerConfig(widths=(8, 16), blocks=(1, 1)))
    refined = DetectFill.assemble(pair.detector, pair.filler, refiner=refiner)
    x = _noisy((2, 3, 24, 40), amount=0.3)
    with torch.no_grad():
        assert torch.equal(refined.eval()(x), pair(x))  # the refiner's tail starts at zero
    refined.train()
    assert refined.refiner.training and not refined.detector.training and not refined.filler.training
    refined(x).square().mean().backward()
    learns = {name.split(".")[0] for name, p in refined.named_parameters() if p.grad is not None}
    assert learns == {"refiner"} and all(p.grad.abs().sum() > 0 for p in refined.refiner.tail.parameters())
    assert refined.receptive_radius == pair.receptive_radius + trunk_radius((1, 1))
