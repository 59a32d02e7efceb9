"""Train a tiny segmenter with ``train_segmentation_network`` and save the weights: ``... segmentation_worker.py OUT``.

Run under ``torchrun --nproc_per_node=2`` by ``tests/evaluation/test_segmentation_distributed.py``; every rank
saves ``OUT.rank<r>`` with its weights, the iterations it ran and the best epoch.
"""

from __future__ import annotations

import sys

import torch
from monai.utils import set_determinism

from monai_synth.engines import distributed
from monai_synth.evaluation.segmentation import build_network, standard_augmentation, train_segmentation_network


def main(out: str) -> None:
    distributed.init_distributed()
    generator = torch.Generator().manual_seed(0)
    items = []
    for _ in range(10):
        label = (torch.rand(1, 16, 16, generator=generator) > 0.5).long()
        items.append(
            {"image": label.float() * 2 - 1 + 0.1 * torch.randn(1, 16, 16, generator=generator), "label": label}
        )
    set_determinism(seed=0)
    network = build_network("UNet", 1, 2, channels=(4, 8), strides=(2,), num_res_units=0)
    result = train_segmentation_network(
        network, items[:8], items[8:], num_classes=2, max_epochs=2, batch_size=2, learning_rate=1e-2, seed=0,
        augmentation=standard_augmentation(16),
    )  # fmt: skip
    torch.save(
        {"network": network.state_dict(), "iterations": result.iterations, "best_epoch": result.best_epoch},
        f"{out}.rank{distributed.rank()}",
    )
    distributed.destroy_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
