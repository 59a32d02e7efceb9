"""Training and evaluation time per arm of the downstream study, at 64 x 64 and 128 x 128, same run.

Prints one JSON line::

    python benchmarks/bench_study.py [--epochs 2] [--real 30] [--synthetic 20] [--threads 1]

(with monai_synth installed, e.g. ``pip install -e .``, or ``PYTHONPATH=.`` from the repository root).

A :class:`monai_synth.evaluation.SyntheticEvaluationStudy` on the built-in phantom (real phantoms,
phantoms of other seeds as the generated set) runs the arms real / synthetic / hybrid with the default
UNet for ``--epochs`` epochs (no early stopping, no FID, no figures) at each size. Per arm and size it
reports the training seconds (validation included), the evaluation seconds (inference and MONAI
metrics on test-R and test-G), and training seconds per training image per epoch; ``ratio_128_vs_64``
divides the 128 x 128 numbers by the 64 x 64 ones (4x the pixels).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile

import torch

from monai_synth.evaluation import SyntheticEvaluationStudy

__all__ = ["main"]


def _measure(image_size: int, args: argparse.Namespace, folder: str) -> dict[str, dict[str, float]]:
    study = SyntheticEvaluationStudy(
        output_dir=f"{folder}/s{image_size}",
        arms=["real", "synthetic", "hybrid"],
        num_synthetic=[args.synthetic],
        image_size=image_size,
        max_epochs=args.epochs,
        patience=0,
        phantom_samples=args.real,
        phantom_generated_samples=int(args.synthetic / 0.8) + 1,
        compute_fid=False,
        figures=False,
        device="cpu",
    )
    results = study.run()
    out = {}
    for arm in results["arms"]:
        fold = arm["folds"][0]
        num_train = fold["num_real_train"] + fold["num_synthetic_train"]
        out[arm["name"]] = {
            "train_pairs": num_train,
            "train_seconds": round(fold["train_seconds"], 3),
            "eval_seconds": round(fold["eval_seconds"], 3),
            "train_ms_per_image_epoch": round(
                1000 * fold["train_seconds"] / (num_train * fold["training"]["epochs_run"]), 3
            ),
            "num_test_cases": sum(len(cases) for cases in arm["cases"].values()),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--real", type=int, default=30, help="real phantom slices (70/10/20 split)")
    parser.add_argument(
        "--synthetic", type=int, default=20, help="generated training pairs of the synthetic/hybrid arms"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("monai_synth").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory() as folder:
        sizes = {size: _measure(size, args, folder) for size in (64, 128)}
    ratios = {
        arm: {
            key: round(sizes[128][arm][key] / sizes[64][arm][key], 3)
            for key in ("train_seconds", "eval_seconds")
            if sizes[64][arm][key] > 0
        }
        for arm in sizes[64]
    }
    print(
        json.dumps(
            {
                "benchmark": "synthetic_evaluation_study",
                "device": "cpu",
                "torch_threads": torch.get_num_threads(),
                "epochs": args.epochs,
                "network": "UNet(channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)",
                "per_arm_64": sizes[64],
                "per_arm_128": sizes[128],
                "ratio_128_vs_64": ratios,
            }
        )
    )


if __name__ == "__main__":
    main()
