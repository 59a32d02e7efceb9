"""A sampler whose order is a function of (seed, pass) and that can start mid-pass, for exact resume."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["ResumableSampler", "pass_seed"]


def pass_seed(seed: int, data_pass: int) -> int:
    """A 32-bit seed derived from ``(seed, data_pass)`` without collisions between neighbouring pairs."""
    return int(np.random.SeedSequence([int(seed), int(data_pass)]).generate_state(1)[0])


class ResumableSampler(Sampler[int]):
    """Indices ``0..num_samples-1`` in an order fixed by ``(seed, data_pass)``, optionally from an offset.

    ``torch.utils.data.RandomSampler`` draws each pass's order from the global RNG when its iterator is
    created, so a run resumed in the middle of a pass sees another order and restarts the pass from its
    first batch. Here :meth:`set_pass` picks the permutation (``torch.randperm`` with a generator seeded
    by :func:`pass_seed`) and the position to start from, so the batches of a resumed run are those of
    the uninterrupted one. :class:`monai_synth.engines.GANTrainerBase` calls it from the trainer's
    iteration count each time the data iterator is (re)created.

    Args:
        num_samples: dataset length.
        shuffle: permute each pass (``False``: ``0..num_samples-1`` in order).
        seed: base seed of the permutations.

    Example::

        sampler = ResumableSampler(10, seed=0)
        sampler.set_pass(3, start=4)  # pass 3 without its first 4 samples
        loader = DataLoader(dataset, batch_size=2, sampler=sampler)
    """

    def __init__(self, num_samples: int, shuffle: bool = True, seed: int = 0) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
        self.num_samples = int(num_samples)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.data_pass = 0
        self.start = 0

    def set_pass(self, data_pass: int, start: int = 0) -> None:
        """Use the order of pass ``data_pass`` (0-based) from its ``start``-th sample on the next iteration."""
        if data_pass < 0 or not 0 <= start <= self.num_samples:
            raise ValueError(
                f"set_pass needs data_pass >= 0 and 0 <= start <= {self.num_samples}, got {data_pass}, {start}."
            )
        self.data_pass, self.start = int(data_pass), int(start)

    def order(self, data_pass: int) -> torch.Tensor:
        """The full ``(num_samples,)`` index order of pass ``data_pass``."""
        if not self.shuffle:
            return torch.arange(self.num_samples)
        generator = torch.Generator().manual_seed(pass_seed(self.seed, data_pass))
        return torch.randperm(self.num_samples, generator=generator)

    def __iter__(self) -> Iterator[int]:
        yield from self.order(self.data_pass)[self.start :].tolist()

    def __len__(self) -> int:
        # the length of a whole pass: loaders and ignite derive the epoch length from it
        return self.num_samples
