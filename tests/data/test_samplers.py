"""ResumableSampler: per-pass orders fixed by (seed, pass), starting mid-pass."""

from __future__ import annotations

import pytest
import torch

from monai_synth.data.samplers import ResumableSampler, pass_seed


def test_order_depends_on_seed_and_pass_only_and_can_start_mid_pass():
    sampler = ResumableSampler(10, seed=3)
    torch.manual_seed(0)
    first = list(sampler)
    torch.manual_seed(1)  # the global RNG plays no part
    assert list(sampler) == first and sorted(first) == list(range(10))
    sampler.set_pass(1)
    second = list(sampler)
    assert second != first and sorted(second) == list(range(10))
    sampler.set_pass(1, start=4)
    assert list(sampler) == second[4:] and len(sampler) == 10
    assert list(ResumableSampler(10, seed=4)) != first
    assert pass_seed(0, 1) != pass_seed(1, 0)


def test_unshuffled_and_bad_positions():
    sampler = ResumableSampler(5, shuffle=False)
    sampler.set_pass(7, start=2)
    assert list(sampler) == [2, 3, 4]
    with pytest.raises(ValueError, match="start"):
        sampler.set_pass(0, start=6)
