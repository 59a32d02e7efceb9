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

    Under ``torch.distributed`` (``num_replicas > 1``) every rank computes the same pass order and cuts it
    in global batches of ``batch_size * num_replicas`` samples; rank ``r`` yields samples
    ``[r * batch_size, (r + 1) * batch_size)`` of each global batch, so the ranks together see the
    batches of a single-process run with the global batch size, in the same row order. Only whole global
    batches are used (a trailing partial one is dropped on every rank, which keeps the ranks in step);
    ``start`` counts positions in the global order.

    Args:
        num_samples: dataset length.
        shuffle: permute each pass (``False``: ``0..num_samples-1`` in order).
        seed: base seed of the permutations.
        num_replicas: number of processes sharing each global batch.
        rank: this process's rank in ``[0, num_replicas)``.
        batch_size: per-rank batch size (needed when ``num_replicas > 1``).

    Raises:
        ValueError: negative ``num_samples``, a rank outside ``[0, num_replicas)``, a missing
            ``batch_size`` with several replicas, or fewer samples than one global batch.

    Example::

        sampler = ResumableSampler(10, seed=0)
        sampler.set_pass(3, start=4)  # pass 3 without its first 4 samples
        loader = DataLoader(dataset, batch_size=2, sampler=sampler)
    """

    def __init__(
        self,
        num_samples: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        batch_size: int | None = None,
    ) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas), got rank {rank} of {num_replicas}.")
        if num_replicas > 1:
            if batch_size is None or batch_size < 1:
                raise ValueError(f"a sampler shared by {num_replicas} processes needs the per-rank batch_size.")
            if num_samples < batch_size * num_replicas:
                raise ValueError(
                    f"{num_samples} samples are fewer than one global batch ({batch_size} per rank x {num_replicas} "
                    "ranks); lower batch_size or use fewer processes."
                )
        self.num_samples = int(num_samples)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.batch_size = int(batch_size) if batch_size is not None else None
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

    @property
    def global_batch_size(self) -> int | None:
        """Samples per global batch (``batch_size * num_replicas``), ``None`` for a single process without one."""
        return None if self.batch_size is None else self.batch_size * self.num_replicas

    def __iter__(self) -> Iterator[int]:
        order = self.order(self.data_pass)
        if self.num_replicas == 1:
            yield from order[self.start :].tolist()
            return
        step, first = self.global_batch_size, self.rank * self.batch_size
        for begin in range(self.start, self.num_samples - step + 1, step):
            yield from order[begin + first : begin + first + self.batch_size].tolist()

    def __len__(self) -> int:
        # the length of a whole pass (this rank's share): loaders and ignite derive the epoch length from it
        if self.num_replicas == 1:
            return self.num_samples
        return (self.num_samples // self.global_batch_size) * self.batch_size
