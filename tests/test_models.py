"""Contracts every model keeps, parametrized over the architectures (timm-style), plus checkpoint round trips."""

import json

import pytest
import torch
from huggingface_hub import ModelCard

from denoiser.architectures import ARCHITECTURES, build_model
from denoiser.checkpoint import load_model, read_card, save_checkpoint
from denoiser.models import ArticleAutoencoder, ArticleConfig, UNetConfig, UNetDenoiser
from denoiser.noise import impulse_mask, salt_and_pepper

@pytest.fixture(params=sorted(ARCHITECTURES))
def model(request: pytest.FixtureRequest):
    torch.manual_seed(0)
    return build_model(request.param, ARCHITECTURES[request.param].tiny).eval()


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


def test_output_shape_matches_input(model) -> None:
    x = torch.rand(2, 1, 32, 32)
    assert model(x).shape == x.shape


@pytest.mark.parametrize("shape", [(1, 1, 37, 53), (2, 3, 32, 32), (1, 3, 9, 130)])
def test_unet_takes_any_size_and_colour(shape: tuple) -> None:
    m = UNetDenoiser(UNetConfig(widths=(8, 16, 32), blocks=(1, 1, 1)))
    assert m(torch.rand(shape)).shape == shape


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
    m(x)[0, 0, 128, 128].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    reach = max((rows - 128).abs().max().item(), (cols - 128).abs().max().item())
    assert 32 < reach <= m.receptive_radius


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
