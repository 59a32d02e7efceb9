"""Data-efficient paired DCGAN training: ADA on real and fake pairs, R1, EMA; the Neff setting stays reachable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from torch import nn

from monai_synth.augment import PairedAugmentPipe, PairedDiffAugment
from monai_synth.engines import PairedGANTrainer
from monai_synth.handlers import AdaptiveAugmentHandler, GeneratorEMAHandler, make_ema_copy
from monai_synth.networks.nets import PairedDCGANDiscriminator, PairedDCGANGenerator

SIZE, LATENT = 16, 8


def _pairs(n: int = 4) -> list[dict]:
    """Image = +1 inside a square, -1 outside; the mask channel is the same square: aligned by construction."""
    items = []
    for i in range(n):
        mask = np.full((SIZE, SIZE), -1.0, np.float32)
        mask[3 + i : 9 + i, 4:11] = 1.0
        items.append({"pair": np.stack([mask.copy(), mask])})
    return items


class RecordingDiscriminator(nn.Module):
    """Wraps a discriminator and keeps every input it is given."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.inner(x)


def _trainer(augment=None, r1_gamma=0.0, epoch_length=8, lr=2e-3, d=None):
    torch.manual_seed(0)
    g = PairedDCGANGenerator(SIZE, 2, LATENT, channels=(16, 8))
    d = d if d is not None else PairedDCGANDiscriminator(SIZE, 2, channels=(8, 16))
    trainer = PairedGANTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=DataLoader(Dataset(_pairs()), batch_size=4, shuffle=False),
        g_network=g,
        g_optimizer=torch.optim.Adam(g.parameters(), 1e-5, betas=(0.5, 0.99)),
        d_network=d,
        d_optimizer=torch.optim.Adam(d.parameters(), lr, betas=(0.5, 0.99)),
        latent_dim=LATENT,
        epoch_length=epoch_length,
        augment=augment,
        r1_gamma=r1_gamma,
        r1_interval=2,
    )
    return trainer, g, d


def test_ada_p_rises_when_the_discriminator_overfits_a_tiny_set():
    augment = PairedAugmentPipe(image_channels=1, p=0.0)
    trainer, _, _ = _trainer(augment, epoch_length=12)
    AdaptiveAugmentHandler(augment, batch_size=4, target=0.6, interval=2, speed_kimg=0.02).attach(trainer)
    signs, ps = [], []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: (signs.append(e.state.output["real_sign"]), ps.append(float(augment.p)))
    )
    trainer.run()
    assert np.mean(signs[:4]) > 0.6  # the discriminator tells 4 fixed reals from a barely trained generator
    step = 4 * 2 / (0.02 * 1000)  # batch * interval / (speed_kimg * 1000)
    assert ps[0] == 0.0 and max(ps) >= 2 * step - 1e-6  # raised at least twice while D(real) stayed positive


def test_p_stays_zero_when_ada_is_disabled_and_neff_setting_has_no_augmentation():
    augment = PairedAugmentPipe(image_channels=1, p=0.0)
    trainer, _, _ = _trainer(augment)  # augmentation module but no controller: p is never changed
    trainer.run()
    assert float(augment.p) == 0.0 and trainer.state.output["ada_p"] == 0.0
    trainer, _, _ = _trainer(None)  # --ada False: the trainer reproduces Neff et al. (no augmentation)
    trainer.run()
    assert set(trainer.state.output) == {"g_loss", "d_loss", "d_real", "d_fake"}


def test_mask_stays_aligned_with_the_image_in_what_the_discriminator_sees():
    # geometric transformations only, always on: image and mask must move together
    augment = PairedAugmentPipe(image_channels=1, brightness=0, contrast=0, lumaflip=0, p=1.0)
    d = RecordingDiscriminator(PairedDCGANDiscriminator(SIZE, 2, channels=(8, 16)))
    trainer, _, _ = _trainer(augment, epoch_length=2, d=d)
    trainer.run()
    reals = [x for x in d.seen if x.shape[0] == 4 and set(torch.unique(x[:, 1]).tolist()) <= {-1.0, 1.0}]
    assert reals, "no augmented real batch reached the discriminator"
    moved = False
    for x in reals:
        image_fg, mask_fg = x[:, 0] > 0, x[:, 1] > 0
        assert (image_fg == mask_fg).float().mean() > 0.97  # bilinear image vs nearest mask differ on edges only
        moved |= not torch.equal(x, torch.as_tensor(np.stack([p["pair"] for p in _pairs()])))
    assert moved  # the augmentation did change the reals


def test_diffaugment_reaches_the_discriminator_with_the_mask_aligned():
    # --ada False --diffaugment True: the fixed policy on every batch D sees, real and generated
    d = RecordingDiscriminator(PairedDCGANDiscriminator(SIZE, 2, channels=(8, 16)))
    trainer, _, _ = _trainer(PairedDiffAugment(image_channels=1, policy="translation,cutout"), epoch_length=2, d=d)
    trainer.run()
    assert len(d.seen) == 2 * 3  # real + fake in the D step, fake in the G step, every iteration
    reals = [x for x in d.seen if set(torch.unique(x[:, 1]).tolist()) <= {-1.0, 1.0}]
    assert reals, "no augmented real batch reached the discriminator"
    for x in reals:
        filled = x[:, 0] == 0  # the real images are +-1: 0 marks a shifted-in or cut-out pixel
        assert filled.any() and torch.all(x[:, 1][filled] == -1.0)
        assert torch.equal(x[:, 0][~filled], x[:, 1][~filled])
    assert trainer.state.output["ada_p"] == 0.0  # no ADA probability to tune


def test_r1_penalty_is_reported_and_finite():
    trainer, _, _ = _trainer(PairedAugmentPipe(1, p=0.2), r1_gamma=1.0, epoch_length=4)
    trainer.run()
    assert trainer.state.output["r1"] > 0 and np.isfinite(trainer.state.output["r1"])
    with pytest.raises(ValueError, match="r1_gamma"):
        _trainer(None, r1_gamma=-1.0)


def test_ema_generator_follows_the_trained_one():
    trainer, g, _ = _trainer(None, epoch_length=6)
    ema = make_ema_copy(g)
    start = [p.clone() for p in ema.parameters()]
    GeneratorEMAHandler(g, ema, batch_size=4, ema_kimg=0.01, rampup=None).attach(trainer)
    trainer.run()
    moved = [not torch.equal(a, b) for a, b in zip(start, ema.parameters())]
    assert any(moved)
    differs = [not torch.equal(a, b) for a, b in zip(g.parameters(), ema.parameters())]
    assert any(differs)  # an average, not a copy
