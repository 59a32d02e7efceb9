"""StyleGAN2-ADA speed and memory on this machine: training sec/kimg, peak memory, generation images/s.

Prints one JSON line::

    python benchmarks/bench_stylegan2.py [--sizes 64 128] [--batch-size 16] [--iterations 16]

(with monai_synth installed, or ``PYTHONPATH=.`` from the repository root).

Per image size, with the ``datasetgan`` bundle's default networks (channel_base 2048, channel_max 128,
z = w = 256, 2 mapping layers) in paired mode (1 image + 1 mask channel), each measurement in its own
subprocess so its peak resident memory (``ru_maxrss``) is its own:

- ``sec_per_kimg``: :class:`monai_synth.engines.StyleGAN2Trainer` with ADA (p = 0.2), lazy R1 (every 16)
  and path length (every 4) -- ``iterations`` iterations after 2 warm-up ones, scaled to 1000 images;
  ``sec_per_kimg_plain`` is the same trainer without augmentation and regularisation, measured in the
  same run: ``ada_and_regularization_overhead`` is their ratio.
- ``sec_per_kimg_channels_last``: the same with channels-last networks and inputs, and
  ``channels_last_speedup`` (the trainer only enables channels-last on CUDA; this says whether it would
  help on CPU).
- ``torch_compile``: the full trainer with ``torch.compile``-d synthesis network and discriminator (the
  regularisers need double backward, which compiled graphs may not support: the error is reported), and
  ``compile_speedup`` over the uncompiled full trainer when it runs.
- ``generate_images_per_s``: EMA-style eval generation for batch sizes 1..32 and the speedup of each
  batch size over batch 1.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch
from ignite.engine import Events

__all__ = ["main"]

NETWORK = {"z_dim": 256, "w_dim": 256, "mapping_layers": 2, "channel_base": 2048, "channel_max": 128}


def _networks(size: int):
    from monai_synth.networks.nets import StyleGAN2Discriminator, StyleGAN2Generator

    torch.manual_seed(0)
    g = StyleGAN2Generator(size, 1, 1, "paired", **NETWORK)
    d = StyleGAN2Discriminator(size, 1, 1, "paired", NETWORK["channel_base"], NETWORK["channel_max"])
    return g, d


def _train(size: int, batch: int, iterations: int, variant: str) -> dict:
    from monai_synth.augment import PairedAugmentPipe
    from monai_synth.engines import StyleGAN2Trainer, lazy_regularization_optimizer_kwargs

    g, d = _networks(size)
    plain = variant == "plain"
    if variant == "channels_last":
        g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
    if variant == "compile":
        g.synthesis = torch.compile(g.synthesis)
        d = torch.compile(d)
    reals = torch.rand(batch, 2, size, size) * 2 - 1
    if variant == "channels_last":
        reals = reals.contiguous(memory_format=torch.channels_last)
    loader = [{"pair": reals}] * (iterations + 2)
    g_opt = torch.optim.Adam(g.parameters(), **lazy_regularization_optimizer_kwargs(0.0025, (0, 0.99), 4))
    d_opt = torch.optim.Adam(d.parameters(), **lazy_regularization_optimizer_kwargs(0.0025, (0, 0.99), 16))
    trainer = StyleGAN2Trainer(
        "cpu",
        1,
        loader,
        g,
        g_opt,
        d,
        d_opt,
        augment=None if plain else PairedAugmentPipe(1, p=0.2),
        r1_gamma=0.0 if plain else 1.0,
        pl_weight=0.0 if plain else 2.0,
        style_mixing_prob=0.9,
    )
    marks = {}

    def mark(engine):
        if engine.state.iteration == 2:
            marks["start"] = time.perf_counter()

    trainer.add_event_handler(Events.ITERATION_COMPLETED, mark)
    trainer.run()
    seconds = time.perf_counter() - marks["start"]
    # every 4th / 16th iteration carries a regulariser: measured iterations 3.. include them in proportion
    return {"sec_per_kimg": round(seconds / (iterations * batch) * 1000, 2)}


def _generate(size: int, batch_sizes: list[int], num: int) -> dict:
    g, _ = _networks(size)
    g.eval()
    out = {}
    with torch.no_grad():
        for b in batch_sizes:
            g(torch.randn(b, NETWORK["z_dim"]))  # warm-up
            start = time.perf_counter()
            done = 0
            while done < num:
                g(torch.randn(b, NETWORK["z_dim"]))
                done += b
            out[str(b)] = round(done / (time.perf_counter() - start), 2)
    return out


def _child(args: argparse.Namespace) -> None:
    """One measurement, printed as JSON with this process's peak resident memory."""
    try:
        if args.child == "generate":
            result = {"images_per_s": _generate(args.size, [1, 2, 4, 8, 16, 32], args.num_samples)}
        else:
            result = _train(args.size, args.batch_size, args.iterations, args.child)
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except Exception as e:  # reported, not hidden: e.g. torch.compile without double-backward support
        result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    print(json.dumps(result))


def _measure(kind: str, size: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--sizes", str(size), "--batch-size", str(args.batch_size)]
    command += ["--iterations", str(args.iterations), "--num-samples", str(args.num_samples)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": done.stderr.strip().splitlines()[-1:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=16)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.size = args.sizes[0]
        _child(args)
        return
    results = {}
    for size in args.sizes:
        full, plain = _measure("full", size, args), _measure("plain", size, args)
        last, compiled = _measure("channels_last", size, args), _measure("compile", size, args)
        generate = _measure("generate", size, args)
        entry = {
            "sec_per_kimg": full.get("sec_per_kimg"),
            "peak_rss_mb": full.get("peak_rss_mb"),
            "sec_per_kimg_plain": plain.get("sec_per_kimg"),
            "sec_per_kimg_channels_last": last.get("sec_per_kimg"),
            "torch_compile": compiled,
            "generate_images_per_s": generate.get("images_per_s"),
        }
        if full.get("sec_per_kimg") and plain.get("sec_per_kimg"):
            entry["ada_and_regularization_overhead"] = round(full["sec_per_kimg"] / plain["sec_per_kimg"], 3)
        if full.get("sec_per_kimg") and last.get("sec_per_kimg"):
            entry["channels_last_speedup"] = round(full["sec_per_kimg"] / last["sec_per_kimg"], 3)
        if compiled.get("sec_per_kimg") and full.get("sec_per_kimg"):
            entry["compile_speedup"] = round(full["sec_per_kimg"] / compiled["sec_per_kimg"], 3)
        speeds = generate.get("images_per_s") or {}
        if speeds.get("1"):
            entry["generate_speedup_vs_batch_1"] = {b: round(v / speeds["1"], 2) for b, v in speeds.items()}
        results[str(size)] = entry
    results["batch_size"] = args.batch_size
    results["hardware"] = {"cpu_threads": torch.get_num_threads(), "platform": platform.platform()}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
