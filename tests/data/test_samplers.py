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


@pytest.mark.parametrize("start", [0, 6])
def test_rank_shares_make_up_the_global_batches_of_one_process(start):
    # 14 samples, 2 ranks x 3 per rank: two whole global batches of 6; the trailing 2 are dropped on every rank
    single = ResumableSampler(14, seed=5)
    ranks = [ResumableSampler(14, seed=5, num_replicas=2, rank=r, batch_size=3) for r in range(2)]
    for sampler in (single, *ranks):
        sampler.set_pass(2, start=start)
    order = list(single)
    shares = [list(r) for r in ranks]
    assert all(len(s) == (12 - start) // 2 for s in shares) and len(ranks[0]) == 6
    for k in range(len(shares[0]) // 3):
        assert shares[0][3 * k : 3 * k + 3] + shares[1][3 * k : 3 * k + 3] == order[6 * k : 6 * k + 6]
    assert not set(shares[0]) & set(shares[1])


def test_rank_aware_sampler_refuses_bad_settings():
    with pytest.raises(ValueError, match="rank"):
        ResumableSampler(10, num_replicas=2, rank=2, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        ResumableSampler(10, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="global batch"):
        ResumableSampler(3, num_replicas=2, rank=0, batch_size=2)
