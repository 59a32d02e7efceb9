"""Style interpreter speed and memory: our factored ensemble against the reference DatasetGAN path.

Prints one JSON line::

    python benchmarks/bench_style_interpreter.py [--sizes 128 256] [--num-pairs 4] [--train-images 30]

(with monai_synth installed, or ``PYTHONPATH=.`` from the repository root).

Per image size, the same StyleGAN2 generator (the ``datasetgan`` bundle's network: channel_base 2048,
channel_max 128, z = w = 256, image mode) and the same 10-member ensemble (widths 256, 128, 2 classes),
each measurement in its own subprocess:

- ``reference``: what the DatasetGAN code does -- one image at a time, every feature map upsampled
  (bilinear) to full resolution and concatenated, every pixel vector materialised, the members applied
  one after another as separate ``nn.Sequential`` MLPs, softmax, vote and Jensen-Shannon on CPU.
- ``ours``: :class:`monai_synth.inferers.StyleInterpreterInferer` over a batch (factored first layer,
  row chunks, vectorised members).

For each: ``pairs_per_s`` (labelled images per second, generator included) and ``peak_mb`` -- the
peak resident memory of the process *above* what it held before the path ran (Linux ``VmHWM`` after
resetting it through ``/proc/self/clear_refs``; ``ru_maxrss`` elsewhere), so the ratio compares the
work, not the Python + PyTorch baseline. Each path runs once on one pair before it is measured (library
initialisation and first allocations are not its cost). ``speedup`` and ``memory_ratio`` (ours / reference) follow, and
``votes_identical`` is the fraction of pixels whose vote is the same in both paths.

``train``: interpreter training (``train_style_interpreter``, bundle defaults: 2 images per step, 2048
pixels per image) on ``train_images`` annotated images at the largest size, one epoch: seconds per epoch
and the process's absolute peak resident memory (``peak_rss_mb``; the issue's budget is 4 GB), with
``reference_feature_store_gb``, the RAM the reference would need to hold those images' pixel vectors.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["main"]

NETWORK = {"z_dim": 256, "w_dim": 256, "mapping_layers": 2, "channel_base": 2048, "channel_max": 128}


def _rss_mb(field: str) -> float:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _models(size: int):
    from monai_synth.networks.nets import PixelClassifierEnsemble, StyleGAN2Generator

    torch.manual_seed(0)
    g = StyleGAN2Generator(size, 1, 0, "image", **NETWORK).eval()
    ens = PixelClassifierEnsemble(g.feature_channels, num_classes=2, num_members=10, hidden_channels=(256, 128))
    with torch.no_grad():  # trained-looking batch-norm statistics
        for bn in (ens.bn1, ens.bn2):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    return g, ens.eval()


def _members(ens) -> list[nn.Sequential]:
    """The ensemble as the reference's separate per-member MLPs (same weights)."""
    h1, h2 = ens.hidden_channels
    members = []
    for m in range(ens.num_members):
        layers = [nn.Linear(ens.w1.shape[2], h1), nn.BatchNorm1d(h1), nn.ReLU()]
        layers += [nn.Linear(h1, h2), nn.BatchNorm1d(h2), nn.ReLU(), nn.Linear(h2, ens.num_classes)]
        net = nn.Sequential(*layers).eval()
        with torch.no_grad():
            for linear, w, b in ((net[0], ens.w1, ens.b1), (net[3], ens.w2, ens.b2), (net[6], ens.w3, ens.b3)):
                linear.weight.copy_(w[m])
                linear.bias.copy_(b[m])
            for bn, full, width in ((net[1], ens.bn1, h1), (net[4], ens.bn2, h2)):
                part = slice(m * width, (m + 1) * width)
                bn.weight.copy_(full.weight[part])
                bn.bias.copy_(full.bias[part])
                bn.running_mean.copy_(full.running_mean[part])
                bn.running_var.copy_(full.running_var[part])
        members.append(net)
    return members


def _reference(g, members, z: torch.Tensor, size: int) -> torch.Tensor:
    from monai_synth.networks.nets.pixel_classifier import jensen_shannon_disagreement, majority_vote

    labels = []
    for i in range(z.shape[0]):
        with torch.no_grad():
            out = g(z[i : i + 1], noise_mode="const", return_features=True)
            full = torch.cat(
                [F.interpolate(f, size=(size, size), mode="bilinear", align_corners=False) for f in out.features], 1
            )
            vectors = full.reshape(full.shape[1], -1).T.contiguous()  # (S * S, total): every pixel vector
            logits = torch.stack([member(vectors) for member in members])  # (n, S * S, K)
        probabilities = logits.softmax(-1).cpu()
        jensen_shannon_disagreement(probabilities)
        labels.append(majority_vote(logits.cpu()).reshape(size, size))
    return torch.stack(labels)


def _infer(path: str, size: int, num_pairs: int) -> dict:
    from monai_synth.inferers import StyleInterpreterInferer

    g, ens = _models(size)
    z = torch.randn(num_pairs, NETWORK["z_dim"], generator=torch.Generator().manual_seed(1))
    members = _members(ens) if path == "reference" else None
    inferer = StyleInterpreterInferer(g)

    def run(latents: torch.Tensor) -> torch.Tensor:
        if path == "reference":
            return _reference(g, members, latents, size)
        return inferer(latents, ens)["label"][:, 0]

    run(z[:1])  # warm-up: one-time library initialisation and allocator growth are not the path's cost
    exact = _reset_peak()
    before = _rss_mb("VmRSS")
    start = time.perf_counter()
    labels = run(z)
    seconds = time.perf_counter() - start
    peak = _rss_mb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.save(labels.to(torch.uint8), f"/tmp/bench_style_interpreter_{path}_{size}.pt")
    return {
        "pairs_per_s": round(num_pairs / seconds, 3),
        "peak_mb": round(peak - before, 1),
        "peak_exact": exact,
    }


def _train(size: int, num_images: int) -> dict:
    from monai_synth.apps.datasetgan import train_style_interpreter

    g, ens = _models(size)
    z = torch.randn(num_images, NETWORK["z_dim"], generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(num_images, size, size, dtype=torch.long)
    masks[:, size // 4 : 3 * size // 4, size // 4 : size // 2] = 1
    start = time.perf_counter()
    train_style_interpreter(g, ens, z, masks, epochs=1, images_per_step=2, pixels_per_image=2048)
    seconds = time.perf_counter() - start
    total = sum(g.feature_channels)
    return {
        "size": size,
        "num_images": num_images,
        "seconds_per_epoch": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "reference_feature_store_gb": round(num_images * size * size * total * 4 / 1e9, 2),
    }


def _child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.child == "train":
        result = _train(args.size, args.train_images)
    else:
        result = _infer(args.child, args.size, args.num_pairs)
    print(json.dumps(result))


def _measure(kind: str, size: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--size", str(size), "--num-pairs", str(args.num_pairs)]
    cmd += ["--train-images", str(args.train_images), "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": done.stderr.strip().splitlines()[-3:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--num-pairs", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--child", default=None)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    results: dict = {
        "benchmark": "style_interpreter",
        "torch": torch.__version__,
        "threads": args.threads,
        "host": platform.node(),
        "num_pairs": args.num_pairs,
    }
    for size in args.sizes:
        ref, ours = _measure("reference", size, args), _measure("ours", size, args)
        entry = {"reference": ref, "ours": ours}
        if "error" not in ref and "error" not in ours:
            entry["speedup"] = round(ours["pairs_per_s"] / ref["pairs_per_s"], 2)
            entry["memory_ratio"] = round(ours["peak_mb"] / max(ref["peak_mb"], 1e-6), 3)
            a = torch.load(f"/tmp/bench_style_interpreter_reference_{size}.pt", weights_only=True)
            b = torch.load(f"/tmp/bench_style_interpreter_ours_{size}.pt", weights_only=True)
            entry["votes_identical"] = round((a == b).float().mean().item(), 6)
        results[str(size)] = entry
    results["train"] = _measure("train", max(args.sizes), args)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
