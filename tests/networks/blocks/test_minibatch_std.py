from __future__ import annotations

import pytest
import torch

from monai_synth.networks.blocks import MinibatchStdDev
from monai_synth.networks.nets import PairedDCGANDiscriminator


def test_appends_group_std_matching_a_direct_computation() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 4, 3, 3)
    y = MinibatchStdDev(group_size=3)(x)
    assert y.shape == (6, 5, 3, 3)
    assert torch.equal(y[:, :4], x)
    # groups are items {0, 2, 4} and {1, 3, 5}
    for members in ([0, 2, 4], [1, 3, 5]):
        expected = x[members].std(dim=0, unbiased=False).mean()
        for i in members:
            assert torch.allclose(y[i, 4], torch.full((3, 3), expected.item()), atol=1e-5)


def test_identical_batch_gives_near_zero_statistic() -> None:
    x = torch.randn(1, 2, 4, 4).repeat(4, 1, 1, 1)
    assert MinibatchStdDev(4)(x)[:, 2].abs().max() < 1e-3


def test_batch_not_divisible_uses_largest_dividing_group() -> None:
    x = torch.randn(6, 2, 2, 2)
    y = MinibatchStdDev(4)(x)  # groups of 3: {0, 2, 4}, {1, 3, 5}
    assert torch.allclose(y[0, 2, 0, 0], x[[0, 2, 4]].std(dim=0, unbiased=False).mean(), atol=1e-5)
    assert MinibatchStdDev(4)(torch.randn(1, 2, 2, 2))[:, 2].abs().max() < 1e-3  # single item: no spread


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="groups"):
        MinibatchStdDev(2, num_channels=3)(torch.zeros(4, 4, 2, 2))
    with pytest.raises(ValueError, match="group_size"):
        MinibatchStdDev(0)


def test_discriminator_option_changes_logits_with_batch_diversity() -> None:
    torch.manual_seed(0)
    disc = PairedDCGANDiscriminator(image_size=16, in_channels=2, channels=(8, 8), minibatch_std=4).eval()
    assert disc.get_config()["minibatch_std"] == 4
    item = torch.rand(1, 2, 16, 16) * 2 - 1
    same = disc(item.repeat(4, 1, 1, 1))
    varied = disc(torch.cat([item, torch.rand(3, 2, 16, 16) * 2 - 1]))
    assert same.shape == (4, 1)
    assert not torch.allclose(same[0], varied[0])  # item 0 scored differently depending on its batch
    with pytest.raises(ValueError, match="minibatch_std"):
        PairedDCGANDiscriminator(image_size=16, in_channels=2, channels=(8, 8), minibatch_std=-1)
