"""StyleGAN2 generator / discriminator: modes, feature maps, latent inputs, truncation, mixing, errors."""

from __future__ import annotations

import pytest
import torch

from monai_synth.networks.nets import StyleGAN2Discriminator, StyleGAN2Generator, StyleGAN2Output, mode_channels

SMALL = {"z_dim": 16, "w_dim": 16, "mapping_layers": 2, "channel_base": 256, "channel_max": 16}


def _g(size=16, mode="paired", **kw):
    torch.manual_seed(0)
    return StyleGAN2Generator(size, image_channels=1, mask_channels=2, mode=mode, **{**SMALL, **kw})


@pytest.mark.parametrize("size", [8, 32, 64])
def test_feature_maps_two_per_block_coarse_to_fine(size):
    g = _g(size)
    out = g(torch.randn(2, 16), noise_mode="const", return_features=True)
    assert isinstance(out, StyleGAN2Output)
    blocks = [2**i for i in range(2, size.bit_length())]
    assert [f.shape[-1] for f in out.features] == [r for r in blocks for _ in range(2)]
    assert [f.shape[1] for f in out.features] == g.feature_channels
    assert all(f.shape[0] == 2 for f in out.features)
    assert out.image.shape == (2, 3, size, size)
    assert out.ws.shape == (2, g.num_ws, 16) and g.num_ws == 2 * (size.bit_length() - 1) - 2


@pytest.mark.parametrize(("mode", "channels"), [("image", 1), ("paired", 3), ("mask", 2)])
def test_modes_set_generated_and_discriminated_channels(mode, channels):
    g = _g(16, mode)
    d = StyleGAN2Discriminator(16, 1, 2, mode, channel_base=256, channel_max=16)
    x = g(torch.randn(4, 16))
    assert x.shape == (4, channels, 16, 16) and mode_channels(mode, 1, 2) == channels
    assert d(x).shape == (4, 1)
    with pytest.raises(ValueError, match=f"{mode} mode"):
        d(torch.randn(4, channels + 1, 16, 16))


def test_reproducible_with_const_noise_and_w_inputs_agree():
    g = _g().eval()
    z = torch.randn(3, 16)
    a = g(z, noise_mode="const")
    assert torch.equal(a, g(z, noise_mode="const"))
    w = g.mapping(z)
    torch.testing.assert_close(g(ws=w, noise_mode="const"), a)  # w broadcast to every layer == from z
    torch.testing.assert_close(g(ws=w[:, None].repeat(1, g.num_ws, 1), noise_mode="const"), a)
    with torch.no_grad():
        for layer in g.convs1:
            layer.noise.strength.fill_(1.0)
    assert not torch.equal(g(z, noise_mode="random"), g(z, noise_mode="random"))
    assert torch.equal(g(z, noise_mode="none"), g(z, noise_mode="none"))


def test_truncation_zero_gives_the_average_w():
    g = _g().train()
    for _ in range(3):
        g.map(torch.randn(8, 16))  # training mode updates w_avg
    assert g.mapping.w_avg.abs().sum() > 0
    g.eval()
    ws = g.map(torch.randn(4, 16), truncation_psi=0.0)
    torch.testing.assert_close(ws, g.mapping.w_avg.expand_as(ws))


def test_style_mixing_switches_to_a_second_w_after_a_cutoff():
    g = _g(32).eval()
    z = torch.randn(6, 16)
    plain = g.map(z)
    mixed = g.map(z, style_mixing_prob=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mixed[:, 0], plain[:, 0])  # the cutoff is >= 1
    differs = ~torch.isclose(mixed, plain).all(dim=2)  # (B, num_ws)
    assert differs.any(dim=1).all()
    for row in differs:  # once switched, stays switched
        first = int(row.float().argmax())
        assert row[first:].all() and not row[:first].any()
    assert torch.equal(g.map(z, style_mixing_prob=0.0), plain)


def test_gradients_reach_every_parameter():
    g = _g()
    d = StyleGAN2Discriminator(16, 1, 2, "paired", channel_base=256, channel_max=16)
    d(g(torch.randn(4, 16))).sum().backward()
    for name, p in list(g.named_parameters()) + list(d.named_parameters()):
        assert p.grad is not None, name


def test_config_round_trip_and_bad_settings():
    g = _g(32)
    assert StyleGAN2Generator(**g.get_config()).get_config() == g.get_config()
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Generator(48)
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Discriminator(4)
    with pytest.raises(ValueError, match="mask_channels"):
        StyleGAN2Generator(16, mode="paired", mask_channels=0)
    with pytest.raises(ValueError, match="mode"):
        StyleGAN2Generator(16, mode="both")
    with pytest.raises(ValueError, match="exactly one"):
        g()
    with pytest.raises(ValueError, match="ws must be"):
        g(ws=torch.randn(2, 3, 16))
    with pytest.raises(ValueError, match="z must be"):
        g(torch.randn(2, 5))
