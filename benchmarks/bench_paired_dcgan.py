"""Paired DCGAN speed on CPU: training images/s, and generation pairs/s batched vs one pair at a time.

Prints one JSON line::

    python benchmarks/bench_paired_dcgan.py [--sizes 64 128] [--train-iterations 5] [--num-samples 64]

(with monai_synth installed, e.g. ``pip install -e .``, or ``PYTHONPATH=.`` from the repository root).

Per image size, with the networks the bundle uses at that size (64: ``train.json`` defaults; 128: the
paper's maps, z = 400) and a phantom-like 7-channel pair (1 image + 6 one-hot classes):

- ``train_images_per_s``: :class:`monai_synth.engines.PairedGANTrainer` iterations (one D and one G
  step on a batch) after one warm-up iteration;
- ``generate_pairs_per_s``: :class:`monai_synth.apps.generation.PairedDatasetFactory` end to end (latents,
  generator, mask decoding and post-processing, de-duplication, NIfTI writing, datalist, manifest)
  with ``batch_size`` pairs per forward pass, and ``single_pairs_per_s`` with ``batch_size=1`` in the
  same run; ``generate_speedup`` is their ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from ignite.engine import Events

from monai_synth.engines import PairedGANTrainer
from monai_synth.networks.nets import PairedDCGANDiscriminator, PairedDCGANGenerator
from monai_synth.utils.io import torch_save_atomic

__all__ = ["main"]

NETWORKS = {
    64: {"latent_dim": 100, "generator": [256, 128, 64, 64], "discriminator": [64, 64, 128, 256]},
    128: {"latent_dim": 400, "generator": [512, 256, 128, 128, 128], "discriminator": [128, 128, 256, 512, 512]},
}
PAIR_CHANNELS = 7
NUM_CLASSES = 6


def _networks(size: int) -> tuple[PairedDCGANGenerator, PairedDCGANDiscriminator, int]:
    spec = NETWORKS[size]
    gen = PairedDCGANGenerator(size, PAIR_CHANNELS, spec["latent_dim"], spec["generator"])
    disc = PairedDCGANDiscriminator(size, PAIR_CHANNELS, spec["discriminator"])
    return gen, disc, spec["latent_dim"]


def train_rate(size: int, batch_size: int, iterations: int) -> float:
    gen, disc, latent_dim = _networks(size)
    reals = torch.rand(batch_size, PAIR_CHANNELS, size, size) * 2 - 1
    loader = [{"pair": reals}] * (iterations + 1)
    trainer = PairedGANTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=loader,
        g_network=gen,
        g_optimizer=torch.optim.Adam(gen.parameters(), 4e-4, betas=(0.5, 0.999)),
        d_network=disc,
        d_optimizer=torch.optim.Adam(disc.parameters(), 4e-4, betas=(0.5, 0.999)),
        latent_dim=latent_dim,
        epoch_length=iterations + 1,
    )
    times: list[float] = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: times.append(time.perf_counter()))
    trainer.run()
    seconds = time.perf_counter() - times[1]  # from the end of the warm-up iteration
    return iterations * batch_size / seconds


def generate_rate(size: int, num_samples: int, batch_size: int, workdir: Path) -> float:
    from monai_synth.apps.generation import PairedDatasetFactory

    gen, _, latent_dim = _networks(size)
    generator_path = workdir / f"generator_{size}.pt"
    config = {
        "generator_class": "monai_synth.networks.nets.PairedDCGANGenerator",
        "generator": gen.get_config(),
        "data": {
            "image_size": size,
            "image_channels": 1,
            "num_classes": NUM_CLASSES,
            "components_per_class": [1] * NUM_CLASSES,
        },
    }
    torch_save_atomic({"state_dict": gen.state_dict(), "config": config, "iteration": 0}, generator_path)
    factory = PairedDatasetFactory(
        generator_path,
        workdir / f"out_{size}_{batch_size}",
        num_samples=num_samples,
        batch_size=batch_size,
        shard_size=num_samples,
    )
    start = time.perf_counter()
    factory.run()
    return num_samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], choices=sorted(NETWORKS))
    parser.add_argument("--train-iterations", type=int, default=5)
    parser.add_argument("--train-batch-size", type=int, default=32)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--generate-batch-size", type=int, default=64)
    args = parser.parse_args()

    torch.manual_seed(0)
    results: dict[str, object] = {
        "benchmark": "paired_dcgan",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            train = train_rate(size, args.train_batch_size, args.train_iterations)
            batched = generate_rate(size, args.num_samples, args.generate_batch_size, Path(tmp))
            single = generate_rate(size, args.num_samples, 1, Path(tmp))
            results[str(size)] = {
                "train_images_per_s": round(train, 2),
                "train_batch_size": args.train_batch_size,
                "generate_pairs_per_s": round(batched, 2),
                "single_pairs_per_s": round(single, 2),
                "generate_speedup": round(batched / single, 2),
            }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
