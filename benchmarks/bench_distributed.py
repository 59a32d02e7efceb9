"""Multi-process scaling of the trainers on this machine: 1 vs 2 ``torchrun`` processes, one thread each.

Prints one JSON line::

    python benchmarks/bench_distributed.py [--iterations 24] [--batch-size 8] [--image-size 32]

(with monai_synth installed, or ``PYTHONPATH=.`` from the repository root; run it through
``/work/notes/heavy`` on the shared machine).

For each trainer the bundle is started exactly as its README says, ``torchrun --standalone
--nproc_per_node=N -m monai.bundle run --config_file "['configs/train.json','configs/multi_gpu_train.json']"``,
with ``OMP_NUM_THREADS=1`` per process, gloo on CPU, on the phantom:

- ``paired_dcgan``: :class:`monai_synth.engines.PairedGANTrainer` (ADA, EMA on; 32 x 32, channels
  ``[64, 32, 16]`` / ``[16, 32, 64]``);
- ``stylegan2``: the datasetgan bundle's :class:`monai_synth.engines.StyleGAN2Trainer` in paired mode
  (lazy R1 every 4 and path length every 2 iterations, so the all-reduces after the regularisers count;
  channel_base 512, channel_max 64);
- ``segmentation``: the synthetic_evaluation bundle's study (``evaluate.json`` +
  ``multi_gpu_evaluate.json``), one ``real`` arm, MONAI ``UNet`` trained with ``DistributedDataParallel``;
  images/s = iterations x batch x processes / training seconds of that arm (validation included, as in
  the study), from its ``results.json``.

The per-rank batch is the same for N = 1 and N = 2 (weak scaling: the global batch doubles).
``images_per_s`` is the bundle's own ``summary.json`` figure (global images per second of training, the
process start-up and data preparation excluded); ``scaling_efficiency`` = images/s with 2 processes /
(2 x images/s with 1 process): 1.0 is perfect, 0.5 means two processes are no faster than one.
``wall_s`` is the whole command, start-up included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]


def _run(bundle: str, nproc: int, overrides: list[str], workdir: Path, batch_size: int = 0) -> dict:
    configs = REPO / "bundles" / bundle / "configs"
    out = workdir / f"{bundle}_{nproc}"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    study = bundle == "synthetic_evaluation"
    pair = ("evaluate.json", "multi_gpu_evaluate.json") if study else ("train.json", "multi_gpu_train.json")
    files = f"['{configs / pair[0]}','{configs / pair[1]}']"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command += ["-m", "monai.bundle", "run", "--config_file", files, *overrides, "--output_dir", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{bundle} with {nproc} process(es) failed:\n{done.stderr[-3000:]}")
    if study:
        training = json.loads((out / "results.json").read_text())["arms"][0]["folds"][0]["training"]
        return {
            "images_per_s": round(training["iterations"] * batch_size * nproc / training["seconds"], 3),
            "iterations": training["iterations"],
            "seconds": round(training["seconds"], 3),
            "wall_s": round(wall, 1),
        }
    summary = json.loads((out / "summary.json").read_text())
    return {
        "images_per_s": summary["images_per_second"],
        "iterations": summary["iterations_this_run"],
        "seconds": summary["seconds_this_run"],
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8, help="per process")
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    common = [
        "--image_size", str(args.image_size), "--batch_size", str(args.batch_size), "--phantom_samples", "64",
        "--device", "cpu", "--amp", "False", "--log_interval", "1000", "--eval_interval", "100000",
        "--sample_interval", "100000", "--checkpoint_interval", "0", "--num_grid_samples", "4",
        "--eval_samples", "8",
    ]  # fmt: skip
    settings = {
        "paired_dcgan": [
            *common, "--max_epochs", "1", "--iterations_per_epoch", str(args.iterations), "--latent_dim", "64",
            "--generator_channels", "[64, 32, 16]", "--discriminator_channels", "[16, 32, 64]",
        ],
        # kimg is set per run so both run `iterations` iterations of the global batch
        "stylegan2": [
            *common, "--mode", "paired", "--z_dim", "64", "--w_dim", "64", "--channel_base", "512",
            "--channel_max", "64", "--r1_interval", "4", "--pl_interval", "2", "--channels_last", "False",
        ],
    }  # fmt: skip
    study = [
        "--arms", "['real']", "--max_epochs", "3", "--patience", "0", "--image_size", str(args.image_size),
        "--batch_size", str(args.batch_size), "--phantom_samples", "64", "--compute_fid", "False",
        "--device", "cpu", "--save_models", "False",
    ]  # fmt: skip
    settings["segmentation"] = study
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in settings.items():
            bundle = {"paired_dcgan": "paired_dcgan", "stylegan2": "datasetgan"}.get(name, "synthetic_evaluation")
            runs = {}
            for nproc in (1, 2):
                extra = []
                if name == "stylegan2":
                    extra = ["--kimg", str(args.iterations * args.batch_size * nproc / 1000)]
                runs[nproc] = _run(bundle, nproc, [*overrides, *extra], Path(tmp), args.batch_size)
            one, two = runs[1]["images_per_s"], runs[2]["images_per_s"]
            results[name] = {
                "images_per_s_1proc": one,
                "images_per_s_2proc": two,
                "scaling_efficiency": round(two / (2 * one), 3) if one else None,
                "runs": {str(k): v for k, v in runs.items()},
            }
    print(
        json.dumps(
            {
                "benchmark": "distributed_scaling",
                "device": "cpu",
                "backend": "gloo",
                "threads_per_process": 1,
                "cpu_count": os.cpu_count(),
                "host": platform.node(),
                "image_size": args.image_size,
                "batch_size_per_process": args.batch_size,
                "iterations": args.iterations,
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
