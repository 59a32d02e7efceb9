"""A tiny paired-GAN training run for the multi-process tests: ``torchrun ... distributed_worker.py OUT BATCH``.

Run with ``torchrun --nproc_per_node=N`` and per-rank batch ``B``, or as a plain process with batch
``N * B``: the two must end with the same weights. The networks have no cross-sample statistics (no
batch norm, no minibatch std) and no augmentation, which is what makes one batch of ``N * B`` and ``N``
batches of ``B`` (gradients averaged) the same computation; R1 runs every iteration, so its double
backward goes through the gradient all-reduce too. Rank 0 (or the single process) saves
``{"generator", "discriminator", "outputs"}`` to ``OUT``; every rank saves ``OUT.rank<r>``.
"""

from __future__ import annotations

import sys

import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset

from monai_synth.engines import PairedGANTrainer, distributed

LATENT, CHANNELS, SIZE, SAMPLES, ITERATIONS = 4, 2, 8, 16, 2


def networks() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    g = torch.nn.Sequential(
        torch.nn.Linear(LATENT, CHANNELS * SIZE * SIZE), torch.nn.Tanh(), torch.nn.Unflatten(1, (CHANNELS, SIZE, SIZE))
    )
    d = torch.nn.Sequential(
        torch.nn.Conv2d(CHANNELS, 4, 3, stride=2, padding=1),
        torch.nn.LeakyReLU(0.2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * (SIZE // 2) ** 2, 1),
    )
    return g, d


def main(out: str, batch_size: int) -> None:
    distributed.init_distributed()
    pairs = torch.rand(SAMPLES, CHANNELS, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    loader = DataLoader(Dataset([{"pair": p} for p in pairs]), batch_size=batch_size, shuffle=True)
    g, d = networks()
    trainer = PairedGANTrainer(
        device="cpu",
        max_epochs=1,
        epoch_length=ITERATIONS,
        train_data_loader=loader,
        g_network=g,
        g_optimizer=torch.optim.Adam(g.parameters(), lr=1e-2, betas=(0.5, 0.99)),
        d_network=d,
        d_optimizer=torch.optim.Adam(d.parameters(), lr=1e-2, betas=(0.5, 0.99)),
        latent_dim=LATENT,
        r1_gamma=1.0,
        r1_interval=1,
        seed=3,
    )
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    trainer.run()
    result = {"generator": g.state_dict(), "discriminator": d.state_dict(), "outputs": outputs}
    torch.save(result, f"{out}.rank{distributed.rank()}")
    if distributed.is_rank_zero():
        torch.save(result, out)
    distributed.destroy_distributed()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
