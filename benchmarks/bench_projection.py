"""GAN inversion speed and quality: batched vs one-image-at-a-time projection, PSNR after K steps.

Prints one JSON line::

    python benchmarks/bench_projection.py [--size 64] [--num-images 16] [--steps 50 100 300]
        [--generator runs/sg2_shenzhen64/generator.pt --dataset-dir ../shared/data/cxr_shenzhen]

(with monai_synth installed, or ``PYTHONPATH=.`` from the repository root).

Without ``--generator`` the targets are images drawn by the ``datasetgan`` bundle's default network
(random weights, image mode) from random w+ -- representable by construction. With a trained generator
and ``--dataset-dir``, the targets are real images preprocessed as its training data, and the
discriminator of ``<generator folder>/checkpoints/checkpoint_last.pt`` adds the perceptual term.

- ``images_per_s``: ``num_images`` images projected for the smallest step count as one batch and one
  image at a time, and ``batch_speedup``;
- ``psnr``: mean reconstruction PSNR (dB, [-1, 1] range) of the batch after each step count, starting
  from the mean w and from a :class:`~monai_synth.networks.nets.LatentEncoder` (trained for
  ``encoder_steps`` batches, its time reported), so one can see whether the encoder pays off.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["main"]

NETWORK = {"z_dim": 256, "w_dim": 256, "mapping_layers": 2, "channel_base": 2048, "channel_max": 128}


def _setup(args: argparse.Namespace):
    from monai_synth.data.pipeline import PairedSliceDataset
    from monai_synth.networks.nets import StyleGAN2Generator
    from monai_synth.utils.export import load_discriminator, load_generator

    if args.generator is None:
        torch.manual_seed(0)
        g = StyleGAN2Generator(args.size, 1, 0, "image", **NETWORK).eval()
        with torch.no_grad():
            ws = g.map(torch.randn(args.num_images, g.z_dim, generator=torch.Generator().manual_seed(1)))
            targets = g.synthesis(ws, noise_mode="const").clamp(-1, 1)
        return g, None, targets
    g, config = load_generator(args.generator)
    checkpoint = Path(args.generator).parent / "checkpoints" / "checkpoint_last.pt"
    d = load_discriminator(checkpoint) if checkpoint.is_file() else None
    data = PairedSliceDataset(
        args.dataset_dir, image_size=int(config["generator"]["image_size"]), intensity=config["data"]["intensity"]
    )
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: args.num_images].tolist()
    targets = torch.stack([torch.as_tensor(np.asarray(data[i]["image"]), dtype=torch.float32) for i in index])
    return g, d, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--num-images", type=int, default=16)
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 100, 300])
    parser.add_argument("--encoder-steps", type=int, default=500)
    parser.add_argument("--generator", default=None)
    parser.add_argument("--dataset-dir", default=None)
    args = parser.parse_args()
    from monai_synth.apps.datasetgan import GANProjector, train_latent_encoder

    g, d, targets = _setup(args)
    fewest = min(args.steps)
    projector = GANProjector(g, d, num_steps=fewest)
    start = time.perf_counter()
    projector(targets)
    batched = args.num_images / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(args.num_images):
        projector(targets[i : i + 1])
    single = args.num_images / (time.perf_counter() - start)
    start = time.perf_counter()
    encoder = train_latent_encoder(g, steps=args.encoder_steps)
    encoder_seconds = time.perf_counter() - start
    psnr: dict[str, dict[str, float]] = {"mean_w": {}, "encoder": {}}
    for steps in args.steps:
        for name, init in (("mean_w", None), ("encoder", encoder)):
            result = GANProjector(g, d, num_steps=steps, encoder=init)(targets)
            psnr[name][str(steps)] = round(float(result.psnr.mean()), 2)
    print(
        json.dumps(
            {
                "benchmark": "projection",
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "host": platform.node(),
                "targets": "generated" if args.generator is None else f"real: {args.dataset_dir}",
                "image_size": int(targets.shape[-1]),
                "num_images": args.num_images,
                "perceptual": d is not None,
                "images_per_s": {"batched": round(batched, 3), "one_at_a_time": round(single, 3), "steps": fewest},
                "batch_speedup": round(batched / single, 2),
                "psnr": psnr,
                "encoder_seconds": round(encoder_seconds, 1),
                "encoder_steps": args.encoder_steps,
            }
        )
    )


if __name__ == "__main__":
    main()
