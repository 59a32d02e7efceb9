"""Tests for the paired DCGAN of Neff et al.: shapes, ranges, paper settings, init, errors, latents."""

from __future__ import annotations

import pytest
import torch

from monai_synth.networks.latents import latents_from_seeds, sample_latents
from monai_synth.networks.nets import PairedDCGANDiscriminator, PairedDCGANGenerator, init_dcgan_weights

torch.set_num_threads(1)

SMALL_CASES = [
    # image_size, generator channels, discriminator channels, paired channels (image + mask)
    (32, (32, 16, 8), (8, 16, 32), 2),  # 1 image + 1 binary mask
    (64, (32, 16, 8, 8), (8, 8, 16, 32), 3),  # 2 images + 1 binary mask
    (64, (16, 8, 8, 8), (8, 8, 8, 16), 5),  # 1 image + 4 one-hot classes
    (32, (16, 8), (8, 16), 2),  # 8 x 8 coarse maps
]


@pytest.mark.parametrize("image_size, g_channels, d_channels, paired_channels", SMALL_CASES)
def test_generator_and_discriminator_shapes(image_size, g_channels, d_channels, paired_channels):
    torch.manual_seed(0)
    gen = PairedDCGANGenerator(image_size, paired_channels, latent_dim=16, channels=g_channels)
    disc = PairedDCGANDiscriminator(image_size, paired_channels, channels=d_channels)
    fake = gen(sample_latents(2, 16))
    assert fake.shape == (2, paired_channels, image_size, image_size)
    assert float(fake.detach().abs().max()) <= 1.0  # tanh output
    assert float(fake.detach().std()) > 0.01  # not a constant map
    logits = disc(fake)
    assert logits.shape == (2, 1)
    logits.sum().backward()
    assert all(p.grad is not None for p in gen.parameters())


def test_paper_setting_parameter_shapes():
    gen = PairedDCGANGenerator()  # 128 x 128, z 400, (512, 256, 128, 128, 128), 5 x 5
    disc = PairedDCGANDiscriminator()
    assert gen.start_size == 4
    assert gen.project.weight.shape == (512 * 4 * 4, 400)
    transposed = [m for m in gen.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [tuple(m.weight.shape) for m in transposed] == [
        (512, 256, 5, 5),
        (256, 128, 5, 5),
        (128, 128, 5, 5),
        (128, 128, 5, 5),
        (128, 2, 5, 5),
    ]
    assert all(m.stride == (2, 2) and m.padding == (2, 2) and m.output_padding == (1, 1) for m in transposed)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [tuple(m.weight.shape) for m in convs] == [
        (128, 2, 5, 5),
        (128, 128, 5, 5),
        (256, 128, 5, 5),
        (512, 256, 5, 5),
        (512, 512, 5, 5),
    ]
    # DCGAN: no batch norm on the discriminator's first layer, LeakyReLU(0.2) everywhere
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in disc.modules()) == 4
    assert all(m.negative_slope == 0.2 for m in disc.modules() if isinstance(m, torch.nn.LeakyReLU))
    assert disc.to_logit.weight.shape == (1, 512 * 4 * 4)
    with torch.no_grad():
        assert gen(latents_from_seeds([0, 1], 400)).shape == (2, 2, 128, 128)


def test_init_statistics():
    gen = PairedDCGANGenerator(image_size=32, out_channels=2, latent_dim=64, channels=(64, 32, 16))
    weight = gen.project.weight  # 64 * 16 * 64 = 65536 samples
    assert abs(float(weight.std()) - 0.05) < 0.002
    assert abs(float(weight.mean())) < 0.002
    bn = [m for m in gen.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    scales = torch.cat([m.weight.detach() for m in bn])
    assert abs(float(scales.mean()) - 1.0) < 0.02 and 0.02 < float(scales.std()) < 0.08
    assert all(float(m.bias.abs().max()) == 0 for m in bn)
    assert float(gen.to_output.conv.bias.abs().max()) == 0
    layer = init_dcgan_weights(torch.nn.Conv2d(8, 64, 5), std=0.1)
    assert abs(float(layer.weight.std()) - 0.1) < 0.01
    with pytest.raises(ValueError, match="std"):
        init_dcgan_weights(layer, std=0)


def test_config_round_trip():
    gen = PairedDCGANGenerator(image_size=32, out_channels=3, latent_dim=8, channels=(16, 8, 8))
    disc = PairedDCGANDiscriminator(image_size=32, in_channels=3, channels=(8, 8, 16))
    assert gen.get_config() == {
        "image_size": 32,
        "out_channels": 3,
        "latent_dim": 8,
        "channels": [16, 8, 8],
        "kernel_size": 5,
    }
    gen2 = PairedDCGANGenerator(**gen.get_config())
    gen2.load_state_dict(gen.state_dict())  # strict: same architecture
    PairedDCGANDiscriminator(**disc.get_config()).load_state_dict(disc.state_dict())
    config = gen.get_config()
    config["channels"].append(4)
    assert gen.config["channels"] == [16, 8, 8]  # a copy


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 100}, "image_size must be a power of two"),
        ({"image_size": 16, "channels": (8, 8, 8)}, r"image_size=16 is too small for len\(channels\)=3"),
        ({"image_size": 64, "channels": ()}, "channels"),
        ({"image_size": 64, "channels": (8, 0)}, "channels"),
        ({"image_size": 64, "channels": (8, 8), "kernel_size": 4}, "kernel_size"),
    ],
)
@pytest.mark.parametrize("net", [PairedDCGANGenerator, PairedDCGANDiscriminator])
def test_bad_architecture_settings(net, kwargs, match):
    with pytest.raises(ValueError, match=match):
        net(**kwargs)


def test_bad_inputs():
    gen = PairedDCGANGenerator(image_size=32, out_channels=2, latent_dim=16, channels=(16, 8, 8))
    disc = PairedDCGANDiscriminator(image_size=32, in_channels=2, channels=(8, 8, 16))
    with pytest.raises(ValueError, match="latent_dim=16"):
        gen(torch.zeros(2, 12))
    with pytest.raises(ValueError, match="latent_dim"):
        PairedDCGANGenerator(latent_dim=0)
    assert gen(torch.zeros(2, 16, 1, 1)).shape == (2, 2, 32, 32)  # (B, latent_dim, 1, 1) is accepted
    with pytest.raises(ValueError, match="in_channels=2"):
        disc(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="image_size=32"):
        disc(torch.zeros(2, 2, 64, 64))
    with pytest.raises(ValueError, match="out_channels"):
        PairedDCGANGenerator(out_channels=0)


def test_sample_latents_uniform_range_and_generator():
    z = sample_latents(2000, 8, generator=torch.Generator().manual_seed(0))
    assert z.shape == (2000, 8) and z.dtype == torch.float32
    assert float(z.min()) >= -1.0 and float(z.max()) <= 1.0
    assert float(z.min()) < -0.99 and float(z.max()) > 0.99  # spans the interval, not N(0, 1) clipped
    assert abs(float(z.mean())) < 0.02 and abs(float(z.var()) - 1 / 3) < 0.01  # U[-1, 1]: mean 0, var 1/3
    assert torch.equal(z, sample_latents(2000, 8, generator=torch.Generator().manual_seed(0)))
    assert sample_latents(0, 8).shape == (0, 8)
    with pytest.raises(ValueError, match="latent_dim"):
        sample_latents(2, 0)


def test_latents_from_seeds_independent_of_batch_composition():
    alone = latents_from_seeds([7], 32)
    in_batch = latents_from_seeds([3, 7, 11], 32)
    other_batch = latents_from_seeds([100, 200, 300, 7], 32)
    assert torch.equal(in_batch[1], alone[0]) and torch.equal(other_batch[3], alone[0])
    assert not torch.equal(in_batch[0], in_batch[2])
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    latents_from_seeds([1, 2], 32)
    assert torch.equal(torch.rand(1), expected)  # the global RNG is untouched
    assert latents_from_seeds([], 32).shape == (0, 32)
    assert float(in_batch.abs().max()) <= 1.0
    with pytest.raises(ValueError, match="seeds must be integers"):
        latents_from_seeds([1.5], 32)


def test_generation_is_idempotent_per_seed():
    gen = PairedDCGANGenerator(image_size=32, out_channels=2, latent_dim=16, channels=(16, 8, 8)).eval()
    with torch.no_grad():
        batch = gen(latents_from_seeds([5, 6, 7], 16))
        single = gen(latents_from_seeds([6], 16))
    torch.testing.assert_close(batch[1:2], single)
