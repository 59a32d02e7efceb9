"""The one latent sampler: same seeds give the same latents as before the move (stored values)."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, Dataset

from monai_synth.engines import PairedGANTrainer, StyleGAN2Trainer
from monai_synth.networks.latents import latents_from_seeds, sample_latents
from monai_synth.networks.nets import (
    PairedDCGANDiscriminator,
    PairedDCGANGenerator,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
)

# computed with the samplers as they were before networks/latents.py existed (commit f6b347a)
SEEDS = [0, 1, 7, 123]
EXPECTED_SEEDS = {
    "uniform": [
        [-0.0074868, 0.5364436, -0.8230451, -0.735939, -0.3851544, 0.2681574, -0.0198132, 0.7928895],
        [0.5152632, -0.4413782, -0.1938615, 0.4693689, -0.9414369, 0.5997173, -0.2057253, 0.5087439],
        [0.0698451, -0.6023936, 0.3184234, 0.3137805, -0.5344769, -0.1498772, -0.5858279, 0.2594727],
        [-0.4077761, 0.0331246, -0.4966586, 0.3771136, -0.8520551, 0.7330439, -0.7268403, -0.7950419],
    ],
    "normal": [
        [1.5409961, -0.2934289, -2.1787894, 0.5684313, -1.0845224, -1.3985955, 0.4033468, 0.8380263],
        [0.6613522, 0.2669241, 0.0616773, 0.6213173, -0.451906, -0.1661302, -1.5227685, 0.3816839],
        [-0.1467951, 0.7861413, 0.9468216, -1.114344, 1.6907902, -0.8948279, -0.355625, 1.2323858],
        [-0.1114671, 0.1203629, -0.3696345, -0.240418, -1.1969243, 0.2092694, -0.972355, -0.7550455],
    ],
}
# first two draws (3 then 2 vectors of size 4) of a torch.Generator seeded with 5
EXPECTED_STREAM = {
    "uniform": [
        [0.6605037, -0.7477782, 0.8149394, 0.6398541],
        [0.8402069, -0.7667096, -0.671217, 0.4758388],
        [-0.9334707, 0.9883695, 0.2128571, 0.1291425],
        [-0.8551756, 0.3186779, 0.4300115, 0.1586552],
        [0.9618539, 0.3003173, -0.8867322, 0.8402234],
    ],
    "normal": [
        [-0.4867808, -0.6038216, -0.5580962, 0.6675243],
        [-0.1974151, 1.9427835, -1.401702, -0.7625571],
        [0.6312134, -0.8991352, -0.5577934, 0.6907188],
        [0.2224586, -0.6662253, 0.6846422, 0.5740016],
        [-0.5828827, 0.7679415, 0.0570927, -1.1893746],
    ],
}


def _close(actual: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), atol=1e-6, rtol=0)


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_latents_from_seeds_match_stored_values(distribution):
    z = latents_from_seeds(SEEDS, 8, distribution=distribution)
    assert z.dtype == torch.float32 and z.shape == (4, 8)
    _close(z, EXPECTED_SEEDS[distribution])
    _close(latents_from_seeds([7], 8, distribution=distribution), EXPECTED_SEEDS[distribution][2:3])


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_seeded_stream_matches_stored_values(distribution):
    rng = torch.Generator().manual_seed(5)
    z = torch.cat(
        [
            sample_latents(3, 4, generator=rng, distribution=distribution),
            sample_latents(2, 4, generator=rng, distribution=distribution),
        ]
    )
    _close(z, EXPECTED_STREAM[distribution])


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_paired_trainer_first_draws_match_stored_values(distribution):
    g = PairedDCGANGenerator(16, 3, 4, channels=(16, 8))
    d = PairedDCGANDiscriminator(16, 3, channels=(8, 16))
    trainer = PairedGANTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=DataLoader(Dataset([]), batch_size=1),
        g_network=g,
        g_optimizer=torch.optim.Adam(g.parameters()),
        d_network=d,
        d_optimizer=torch.optim.Adam(d.parameters()),
        latent_dim=4,
        latent_distribution=distribution,
        seed=5,
    )
    trainer.state.device = torch.device("cpu")
    _close(torch.cat([trainer.sample_latents(3), trainer.sample_latents(2)]), EXPECTED_STREAM[distribution])


def test_stylegan2_trainer_and_sample_z_match_stored_values():
    kw = {"image_channels": 1, "mask_channels": 1, "mode": "paired", "channel_base": 64, "channel_max": 8}
    g = StyleGAN2Generator(8, z_dim=4, w_dim=8, mapping_layers=2, **kw)
    d = StyleGAN2Discriminator(8, **kw)
    trainer = StyleGAN2Trainer(
        "cpu", 1, DataLoader(Dataset([]), batch_size=1), g, torch.optim.Adam(g.parameters()), d,
        torch.optim.Adam(d.parameters()), seed=5,
    )  # fmt: skip
    trainer.state.device = torch.device("cpu")
    _close(torch.cat([trainer.draw_latents(3), trainer.draw_latents(2)]), EXPECTED_STREAM["normal"])
    _close(g.sample_z(3, generator=torch.Generator().manual_seed(5)), EXPECTED_STREAM["normal"][:3])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="distribution"):
        sample_latents(2, 4, distribution="cauchy")
    with pytest.raises(ValueError, match="seeds must be integers"):
        latents_from_seeds([1.5], 4)
    assert latents_from_seeds([], 4).shape == (0, 4)
