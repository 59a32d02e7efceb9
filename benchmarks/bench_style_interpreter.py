"""Style interpreter speed and memory: our factored ensemble against the reference DatasetGAN path.

Prints one JSON line::

    python benchmarks/bench_style_interpreter.py [--width both|paper|bundle] [--sizes 128 256] [--num-pairs 4]
        [--train-images 30] [--profile]

(with monai_synth installed, or ``PYTHONPATH=.`` from the repository root).

Per generator width and image size, the same StyleGAN2 generator and the same 10-member ensemble (widths
256, 128, 2 classes), each measurement in its own subprocess. Widths: ``bundle`` is the ``datasetgan``
bundle's network (channel_base 2048, channel_max 128, z = w = 256: 1,008 feature channels per pixel at
256 x 256); ``paper`` the DatasetGAN paper's (channel_base 16384, channel_max 512, z = w = 512: 4,992).

- ``reference``: what the DatasetGAN code does -- one image at a time, every feature map upsampled
  (bilinear) to full resolution and concatenated, every pixel vector materialised, the members applied
  one after another as separate ``nn.Sequential`` MLPs, softmax, vote and Jensen-Shannon on CPU.
- ``ours``: :class:`monai_synth.inferers.StyleInterpreterInferer` over a batch (factored first layer,
  banded upsampling, row chunks, vectorised members).

For each: ``pairs_per_s`` (labelled images per second, generator included) and ``peak_mb`` -- the
peak resident memory of the process *above* what it held before the path ran (Linux ``VmHWM`` after
resetting it through ``/proc/self/clear_refs``; ``ru_maxrss`` elsewhere), so the ratio compares the
work, not the Python + PyTorch baseline. Each path runs once on one pair before it is measured (library
initialisation and first allocations are not its cost). ``speedup`` and ``memory_ratio`` (ours / reference) follow, and
``votes_identical`` is the fraction of pixels whose vote is the same in both paths.

``roofline`` (ours): multiply-adds per pair of our interpreter path, counted here from the shapes
(``gmac_per_pair``: first layer per resolution, banded upsampling, layers 2-3; ``floor_gmac_per_pair``
counts the upsampling at two taps per axis instead), the seconds of the generator alone and of the
interpreter (path minus generator), and ``gmac_per_s`` of the interpreter against ``matmul_gmac_per_s``,
one ``torch.matmul`` of the same number of multiply-adds (pixel vectors times the ensemble's first layer)
in the same process: ``matmul_over_ours`` is how far the path is from that rate. Reference rows carry the
reference's own rate (its multiply-adds are the dense first layer and layers 2-3).

``cuda``: with a GPU, ours on CUDA in fp32 and under fp16 / bf16 autocast, pairs/s and the fraction of
votes equal to the CPU reference's; otherwise the reason it was skipped. ``--profile``: the top
operators of our path (``torch.profiler``, self CPU time) at the largest size of each width.

``train``: interpreter training (``train_style_interpreter``, bundle defaults: 2 images per step, 2048
pixels per image) on ``train_images`` annotated images at the largest size (bundle width), one epoch:
seconds per epoch and the process's absolute peak resident memory (``peak_rss_mb``; the issue's budget is
4 GB), with ``reference_feature_store_gb``, the RAM the reference would need to hold those images' pixel
vectors.
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

WIDTHS = {
    "bundle": {"z_dim": 256, "w_dim": 256, "mapping_layers": 2, "channel_base": 2048, "channel_max": 128},
    "paper": {"z_dim": 512, "w_dim": 512, "mapping_layers": 2, "channel_base": 16384, "channel_max": 512},
}


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


def _models(size: int, width: str = "bundle"):
    from monai_synth.networks.nets import PixelClassifierEnsemble, StyleGAN2Generator

    torch.manual_seed(0)
    g = StyleGAN2Generator(size, 1, 0, "image", **WIDTHS[width]).eval()
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


def _macs(ens, feature_shapes: list[tuple[int, int]], size: int) -> dict:
    """Multiply-adds per image of our path and of the reference, counted from the shapes.

    ``feature_shapes``: ``(channels, resolution)`` per generator feature map. Ours: the first layer per
    resolution in the order :meth:`~PixelClassifierEnsemble.chunks` picks, the banded row upsampling of the
    projected maps, the column step (``K`` gathered source columns per output, the folded bias included)
    and layers 2-3; ``floor`` counts upsampling at two taps per axis and resolution (what a sparse kernel
    would do) instead of the row and column steps. Reference: the dense first layer on every pixel vector
    and layers 2-3.
    """
    import math

    from monai_synth.networks.nets.pixel_classifier import _CHUNK_PIXELS, _TILE, _column_tiles, _row_bands

    n, (h1, h2), k = ens.num_members, ens.hidden_channels, ens.num_classes
    n1, pixels = n * h1, size * size
    by_resolution: dict[int, int] = {}
    for c, r in feature_shapes:
        by_resolution[r] = by_resolution.get(r, 0) + c
    first_layer = rows = upsample_raw = 0
    first = []
    rows_per_chunk = max(1, min(size, _CHUNK_PIXELS // size))
    starts = list(range(0, size, rows_per_chunk))
    for r, c in by_resolution.items():
        a = ens._interpolation(r, size, torch.device("cpu"), torch.float32)
        if ens._project_first(r, c, size):
            first.append(a)
            first_layer += r * r * c * n1
            rows += sum(
                min(rows_per_chunk, size - s0) * (hi - lo) * r * n1
                for s0, (lo, hi) in zip(starts, _row_bands(a, starts, rows_per_chunk))
            )
        else:
            first_layer += pixels * c * n1
            if r != size:  # raw channels upsampled: banded rows, dense columns
                upsample_raw += pixels * r * c + size * r * c * 2
    tile = math.gcd(size, _TILE)
    columns = pixels * n1 * _column_tiles(first, size, tile, constant=True)[0].shape[2] if first else 0
    heads = pixels * n * (h1 * h2 + h2 * k)
    floor_upsample = sum(2 * (pixels + size * a.shape[1]) * n1 for a in first)
    total = sum(by_resolution.values())
    return {
        "gmac_per_pair": round((first_layer + rows + columns + upsample_raw + heads) / 1e9, 2),
        "floor_gmac_per_pair": round((first_layer + floor_upsample + heads) / 1e9, 2),
        "reference_gmac_per_pair": round((pixels * total * n1 + heads) / 1e9, 2),
        "first_layer_gmac": round(first_layer / 1e9, 2),
        "upsampling_gmac": round((rows + columns + upsample_raw) / 1e9, 2),
        "layers_2_3_gmac": round(heads / 1e9, 2),
    }


def _matmul_rate(macs: float, total_channels: int, n1: int, device: str = "cpu") -> float:
    """GMAC/s of one ``torch.matmul`` with ``macs`` multiply-adds: pixel vectors (rows, total) @ (total, n1)."""
    rows = max(1, int(macs / (total_channels * n1)))
    a = torch.randn(rows, total_channels, device=device)
    w = torch.randn(total_channels, n1, device=device)
    (a[:64] @ w).sum().item()  # warm-up
    start = time.perf_counter()
    (a @ w).sum().item()
    return rows * total_channels * n1 / (time.perf_counter() - start) / 1e9


def _profile(inferer, ens, z: torch.Tensor, top: int = 12) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        inferer(z, ens)
    rows = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {
            "op": e.key,
            "shapes": str(e.input_shapes)[:120],
            "self_s": round(e.self_cpu_time_total / 1e6, 3),
            "calls": e.count,
        }
        for e in rows[:top]
    ]


def _infer(path: str, size: int, num_pairs: int, width: str, profile: bool = False) -> dict:
    from monai_synth.inferers import StyleInterpreterInferer
    from monai_synth.inferers.style_interpreter import generator_features

    g, ens = _models(size, width)
    z = torch.randn(num_pairs, WIDTHS[width]["z_dim"], generator=torch.Generator().manual_seed(1))
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
    torch.save(labels.to(torch.uint8), f"/tmp/bench_style_interpreter_{width}_{path}_{size}.pt")
    result = {
        "pairs_per_s": round(num_pairs / seconds, 3),
        "peak_mb": round(peak - before, 1),
        "peak_exact": exact,
    }
    # roofline: the generator alone (batched as the path runs it; the reference runs it per image, same cost)
    start = time.perf_counter()
    generator_features(g, z, "z")
    generator_s = (time.perf_counter() - start) / num_pairs
    with torch.no_grad():
        shapes = [(f.shape[1], f.shape[-1]) for f in g(z[:1], noise_mode="const", return_features=True).features]
    macs = _macs(ens, shapes, size)
    interpreter_s = max(seconds / num_pairs - generator_s, 1e-9)
    own = macs["gmac_per_pair"] if path == "ours" else macs["reference_gmac_per_pair"]
    matmul = _matmul_rate(own * 1e9, sum(c for c, _ in shapes), ens.num_members * ens.hidden_channels[0])
    result["roofline"] = {
        **(macs if path == "ours" else {"gmac_per_pair": own}),
        "generator_s_per_pair": round(generator_s, 3),
        "interpreter_s_per_pair": round(interpreter_s, 3),
        "gmac_per_s": round(own / interpreter_s, 2),
        "matmul_gmac_per_s": round(matmul, 2),
        "matmul_over_ours": round(matmul / (own / interpreter_s), 2),
    }
    if profile and path == "ours":
        result["profile"] = _profile(inferer, ens, z[:1])
    return result


def _cuda(size: int, num_pairs: int, width: str) -> dict:
    """Ours on CUDA in fp32 and under fp16 / bf16 autocast: pairs/s and votes equal to the CPU reference."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    from monai_synth.inferers import StyleInterpreterInferer

    g, ens = _models(size, width)
    g, ens = g.cuda(), ens.cuda()
    z = torch.randn(num_pairs, WIDTHS[width]["z_dim"], generator=torch.Generator().manual_seed(1)).cuda()
    inferer = StyleInterpreterInferer(g)
    reference_file = Path(f"/tmp/bench_style_interpreter_{width}_reference_{size}.pt")
    reference = torch.load(reference_file, weights_only=True) if reference_file.is_file() else None
    result = {"device": torch.cuda.get_device_name()}
    for name, dtype in (("fp32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            inferer(z[:1], ens)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            labels = inferer(z, ens)["label"][:, 0]
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        entry = {
            "pairs_per_s": round(num_pairs / seconds, 2),
            "peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        }
        if reference is not None:
            entry["votes_identical"] = round((labels.cpu().to(torch.uint8) == reference).float().mean().item(), 6)
        result[name] = entry
    return result


def _train(size: int, num_images: int) -> dict:
    from monai_synth.apps.datasetgan import train_style_interpreter

    g, ens = _models(size)
    z = torch.randn(num_images, WIDTHS["bundle"]["z_dim"], generator=torch.Generator().manual_seed(1))
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
    elif args.child == "cuda":
        result = _cuda(args.size, args.num_pairs, args.width)
    else:
        result = _infer(args.child, args.size, args.num_pairs, args.width, args.profile)
    print(json.dumps(result))


def _measure(kind: str, size: int, args: argparse.Namespace, width: str = "bundle", profile: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--size", str(size), "--num-pairs", str(args.num_pairs)]
    cmd += ["--train-images", str(args.train_images), "--threads", str(args.threads), "--width", width]
    cmd += ["--profile"] if profile else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": done.stderr.strip().splitlines()[-3:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", choices=["both", "paper", "bundle"], default="both")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--num-pairs", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--profile", action="store_true", help="top operators of our path at the largest size")
    parser.add_argument("--no-train", action="store_true", help="skip the interpreter training measurement")
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
    widths = ["bundle", "paper"] if args.width == "both" else [args.width]
    for width in widths:
        results[width] = {}
        for size in args.sizes:
            ref = _measure("reference", size, args, width)
            ours = _measure("ours", size, args, width, profile=args.profile and size == max(args.sizes))
            entry = {"reference": ref, "ours": ours}
            if "error" not in ref and "error" not in ours:
                entry["speedup"] = round(ours["pairs_per_s"] / ref["pairs_per_s"], 2)
                entry["memory_ratio"] = round(ours["peak_mb"] / max(ref["peak_mb"], 1e-6), 3)
                a = torch.load(f"/tmp/bench_style_interpreter_{width}_reference_{size}.pt", weights_only=True)
                b = torch.load(f"/tmp/bench_style_interpreter_{width}_ours_{size}.pt", weights_only=True)
                entry["votes_identical"] = round((a == b).float().mean().item(), 6)
            entry["cuda"] = _measure("cuda", size, args, width)
            results[width][str(size)] = entry
    if not args.no_train:
        results["train"] = _measure("train", max(args.sizes), args)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
