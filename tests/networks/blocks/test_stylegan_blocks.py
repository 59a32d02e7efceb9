"""StyleGAN2 building blocks: modulated convolution, FIR resampling, equalised layers, noise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_synth.networks.blocks import (
    EqualizedConv2d,
    EqualizedLinear,
    ModulatedConv2d,
    NoiseInjection,
    downsample2d,
    fir_filter,
    modulated_conv2d,
    upfirdn2d,
    upsample2d,
)


def _reference_modulated(x, weight, styles, demodulate):
    """One plain convolution per sample with that sample's scaled (and normalised) weights."""
    outs = []
    for b in range(x.shape[0]):
        w = weight * styles[b][None, :, None, None]
        if demodulate:
            w = w / torch.sqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        outs.append(F.conv2d(x[b : b + 1], w, padding=weight.shape[-1] // 2))
    return torch.cat(outs)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("kernel", [1, 3])
def test_modulated_conv_equals_per_sample_reference(demodulate, kernel):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 7, 7)
    weight = torch.randn(4, 5, kernel, kernel)
    styles = torch.rand(3, 5) + 0.5
    out = modulated_conv2d(x, weight, styles, demodulate=demodulate)
    assert out.shape == (3, 4, 7, 7)
    torch.testing.assert_close(out, _reference_modulated(x, weight, styles, demodulate), rtol=1e-4, atol=1e-5)


def test_demodulated_output_keeps_unit_variance():
    torch.manual_seed(0)
    conv = ModulatedConv2d(128, 64, 3, w_dim=16)
    x = torch.randn(8, 128, 16, 16)
    with torch.no_grad():
        y = conv(x, torch.randn(8, 16))
    interior = y[..., 1:-1, 1:-1]  # zero padding lowers the variance at the border
    assert abs(interior.std().item() - 1.0) < 0.1
    with torch.no_grad():
        undemod = modulated_conv2d(x, conv.weight, torch.full((8, 128), 3.0), demodulate=False)
    assert undemod.std() > 10  # without demodulation the style scale passes straight through


def test_modulated_conv_rejects_wrong_style_shape():
    with pytest.raises(ValueError, match="styles"):
        modulated_conv2d(torch.randn(2, 3, 4, 4), torch.randn(1, 3, 3, 3), torch.randn(2, 4))


def test_fir_filter_is_normalised_separable_1331():
    f = fir_filter()
    assert f.shape == (4, 4)
    assert torch.isclose(f.sum(), torch.tensor(1.0))
    torch.testing.assert_close(f[0] / f[0, 0], torch.tensor([1.0, 3.0, 3.0, 1.0]))
    with pytest.raises(ValueError, match="taps"):
        fir_filter([])


def test_fir_resampling_exact_on_constants():
    f = fir_filter()
    x = torch.full((2, 3, 8, 8), 0.7)
    up = upsample2d(x, f)
    down = downsample2d(x, f)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 0.7))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 0.7))


def test_fir_resampling_exact_on_linear_ramps():
    f = fir_filter()
    ramp = torch.arange(16, dtype=torch.float32)
    x = (3 * ramp[None, :] + 0.5 * ramp[:, None])[None, None]  # a plane: 3 per column, 0.5 per row
    up = upsample2d(x, f)[0, 0, 2:-2, 2:-2]
    # samples every half pixel: slopes halve, and stay exactly linear in the interior
    torch.testing.assert_close(up[:, 1:] - up[:, :-1], torch.full_like(up[:, 1:], 1.5))
    torch.testing.assert_close(up[1:] - up[:-1], torch.full_like(up[1:], 0.25))
    down = downsample2d(x, f)[0, 0, 1:-1, 1:-1]
    torch.testing.assert_close(down[:, 1:] - down[:, :-1], torch.full_like(down[:, 1:], 6.0))
    torch.testing.assert_close(down[1:] - down[:-1], torch.full_like(down[1:], 1.0))
    # the output sample at index i sits at input position (i + 0.5) * 2 - 0.5
    torch.testing.assert_close(down[0, 0], x[0, 0, 2:4, 2:4].mean())


def test_upfirdn2d_padding_and_errors():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    identity = torch.ones(1, 1)
    torch.testing.assert_close(upfirdn2d(x, identity, padding=(-1, -1, -1, -1)), x[..., 1:-1, 1:-1])
    with pytest.raises(ValueError, match="B, C, H, W"):
        upfirdn2d(torch.zeros(4, 4), identity)


def test_equalized_layers_keep_variance_and_downsample():
    torch.manual_seed(0)
    lin = EqualizedLinear(512, 256)
    conv = EqualizedConv2d(64, 32, 3, down=True)
    skip = EqualizedConv2d(64, 32, 1, bias=False, down=True)
    with torch.no_grad():
        y = lin(torch.randn(256, 512))
        z = conv(torch.randn(4, 64, 16, 16))
    assert abs(y.std().item() - 1.0) < 0.1
    assert z.shape == (4, 32, 8, 8) and skip(torch.randn(4, 64, 16, 16)).shape == (4, 32, 8, 8)
    with torch.no_grad():
        plain = EqualizedConv2d(64, 32, 3)(torch.randn(4, 64, 16, 16))
    assert abs(plain[..., 1:-1, 1:-1].std().item() - 1.0) < 0.15  # the blur before a downsampling conv lowers it
    slow = EqualizedLinear(4, 4, lr_multiplier=0.01)
    assert torch.isclose(slow.weight.std() * slow.weight_gain, torch.tensor(0.5), rtol=0.6)


def test_noise_modes():
    torch.manual_seed(0)
    noise = NoiseInjection(8)
    with torch.no_grad():
        noise.strength.fill_(0.5)
    x = torch.zeros(2, 3, 8, 8)
    assert torch.equal(noise(x, "none"), x)
    const_a, const_b = noise(x, "const"), noise(x, "const")
    assert torch.equal(const_a, const_b) and const_a.abs().sum() > 0
    assert not torch.equal(noise(x, "random"), noise(x, "random"))
    explicit = torch.ones(1, 1, 8, 8)
    torch.testing.assert_close(noise(x, "random", explicit), torch.full_like(x, 0.5))
    with pytest.raises(ValueError, match="noise_mode"):
        noise(x, "sometimes")
