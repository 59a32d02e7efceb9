"""SemanticGANTrainer: both discriminators and the mask branch train; labelled pairs are a function of (seed, iteration)."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, Dataset

from monai_synth.augment import PairedAugmentPipe
from monai_synth.engines import SemanticGANTrainer
from monai_synth.networks.nets import SemanticStyleGAN2Generator, StyleGAN2Discriminator


def _trainer(labelled: list[dict], images: list[dict], **kwargs) -> SemanticGANTrainer:
    torch.manual_seed(0)
    g = SemanticStyleGAN2Generator(16, 1, 2, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16)
    d = StyleGAN2Discriminator(16, 1, mode="image", channel_base=128, channel_max=16)
    dm = StyleGAN2Discriminator(16, 1, 1, mode="paired", channel_base=128, channel_max=16)
    return SemanticGANTrainer(
        "cpu", 1, DataLoader(Dataset(images), batch_size=4, shuffle=True), g, torch.optim.Adam(g.parameters(), 1e-3),
        d, torch.optim.Adam(d.parameters(), 1e-3), dm, torch.optim.Adam(dm.parameters(), 1e-3), Dataset(labelled),
        labelled_batch_size=2, augment=PairedAugmentPipe(1, p=0.2), mask_augment=PairedAugmentPipe(1, p=0.2),
        r1_interval=2, pl_interval=2, **kwargs,
    )  # fmt: skip


def _data(n_labelled: int = 3, n_images: int = 8) -> tuple[list[dict], list[dict]]:
    rng = torch.Generator().manual_seed(0)
    labelled = []
    for _ in range(n_labelled):
        image = torch.rand(1, 16, 16, generator=rng) * 2 - 1
        mask = (torch.rand(1, 16, 16, generator=rng) > 0.5).float() * 2 - 1
        labelled.append({"pair": torch.cat([image, mask])})
    images = [{"image": torch.rand(1, 16, 16, generator=rng) * 2 - 1} for _ in range(n_images)]
    return labelled, images


def test_one_epoch_updates_both_discriminators_and_the_mask_branch() -> None:
    labelled, images = _data()
    trainer = _trainer(labelled, images)
    before = {
        "to_masks": [p.detach().clone() for p in trainer.g_network.to_masks.parameters()],
        "d_m": [p.detach().clone() for p in trainer.mask_network.parameters()],
        "d_r": [p.detach().clone() for p in trainer.d_network.parameters()],
    }
    trainer.run()
    assert trainer.state.iteration == 2
    out = trainer.state.output
    assert {"g_loss", "g_mask_loss", "d_loss", "mask_d_loss", "mask_r1", "mask_real_sign"} <= set(out)
    assert out["mask_r1"] > 0 and out["r1"] > 0  # lazy R1 on both at iteration 2
    after = {
        "to_masks": list(trainer.g_network.to_masks.parameters()),
        "d_m": list(trainer.mask_network.parameters()),
        "d_r": list(trainer.d_network.parameters()),
    }
    for name in before:
        assert any(not torch.equal(a, b) for a, b in zip(before[name], after[name])), name
    assert "mask_scaler" in trainer.state_dict()


def test_labelled_batches_depend_only_on_seed_and_iteration() -> None:
    labelled, images = _data(n_labelled=5)
    a, b = _trainer(labelled, images), _trainer(labelled, images)
    a.state.device = b.state.device = torch.device("cpu")
    assert torch.equal(a.labelled_batch(7, 3), b.labelled_batch(7, 3))
    assert not torch.equal(a.labelled_batch(7, 3), a.labelled_batch(8, 3))
    assert a.labelled_batch(1, 9).shape == (9, 2, 16, 16)  # more than there are: drawn with replacement


def test_bad_settings_are_refused() -> None:
    labelled, images = _data()
    with pytest.raises(ValueError, match="labelled_data is empty"):
        _trainer([], images)
    with pytest.raises(ValueError, match="mask_r1_gamma"):
        _trainer(labelled, images, mask_r1_gamma=-1.0)
