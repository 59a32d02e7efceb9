"""Multi-process training with ``torch.distributed`` (``torchrun``): process group, rank roles, gradient sync.

The bundles' ``configs/multi_gpu_train.json`` overlays call :func:`init_distributed` first, as the MONAI
model-zoo overlays do (``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``; NCCL on
CUDA, gloo on CPU). :class:`~monai_synth.engines.GANTrainerBase` then notices the process group and

- gives each rank its slice of every global batch (rank-aware
  :class:`~monai_synth.data.samplers.ResumableSampler`, per-pass seeding, exact resume) and of every
  global batch of latents (all ranks draw the same latents from the shared latent generator and keep
  their rows, so the latent generator stays identical on every rank);
- averages gradients over the ranks after every backward with one all-reduce of the flattened
  gradients (:func:`all_reduce_gradients`), as the StyleGAN2-ADA reference does, instead of
  ``DistributedDataParallel``, which cannot run the double backward of the R1 and path-length
  regularisers;
- averages floating buffers (batch-norm running statistics) after each iteration and the logged
  outputs (the ADA statistic ``real_sign`` among them, so ``p`` and the EMA stay identical on every rank).

Only rank 0 writes (checkpoints, exports, sample grids, summaries, MLflow): :func:`handlers_for_rank`
keeps on the other ranks only handlers marked ``every_rank = True`` (EMA, ADA, checkpoint resume).
Global batch = per-rank ``batch_size`` x ``world_size``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "init_distributed",
    "is_distributed",
    "world_size",
    "rank",
    "is_rank_zero",
    "local_device",
    "seed_rank",
    "handlers_for_rank",
    "all_reduce_gradients",
    "all_reduce_buffers",
    "broadcast_module",
    "all_reduce_mean",
    "all_finite",
    "barrier",
    "fail_together",
    "broadcast_object",
    "destroy_distributed",
]

logger = logging.getLogger(__name__)


def init_distributed(backend: str = "auto") -> bool:
    """Join the ``torchrun`` process group from the environment (``init_method="env://"``).

    Args:
        backend: ``"auto"`` (NCCL when CUDA is available, gloo otherwise), ``"nccl"`` or ``"gloo"``.

    Returns:
        ``True`` when running with more than one process (the group is initialised), ``False`` for a
        plain single-process run (``WORLD_SIZE`` unset or 1: nothing is initialised).

    Raises:
        ValueError: unknown ``backend``.
    """
    if backend not in ("auto", "nccl", "gloo"):
        raise ValueError(f"backend must be 'auto', 'nccl' or 'gloo', got {backend!r}.")
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, init_method="env://")
        logger.info("Rank %d of %d joined the %s process group.", dist.get_rank(), dist.get_world_size(), backend)
    return True


def is_distributed() -> bool:
    """``True`` inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def is_rank_zero() -> bool:
    """``True`` on the process that writes files (always in a single-process run)."""
    return rank() == 0


def local_device(device: torch.device | str) -> torch.device:
    """``device`` with a CUDA device replaced by this process's GPU (``cuda:LOCAL_RANK``) under ``torchrun``."""
    device = torch.device(device)
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def seed_rank(seed: int) -> int:
    """Seed the global RNGs with ``seed`` + rank (``monai.utils.set_determinism``) and return that seed.

    :class:`~monai_synth.engines.GANTrainerBase` calls it on ranks > 0 when a fresh run starts, after the
    networks (and the EMA copy) were built identically from the bundle's seed: from then on the global
    RNG drives augmentation and StyleGAN2 noise, which must differ between the ranks' samples as they
    would between the samples of one large batch.
    """
    from monai.utils import set_determinism

    seed = int(seed) + rank()
    set_determinism(seed=seed)
    return seed


def handlers_for_rank(handlers: Iterable[Any]) -> list[Any]:
    """The handlers this process attaches: all of them on rank 0, those marked ``every_rank`` elsewhere.

    ``None`` entries (handlers a bundle switched off) are dropped. Handlers that change training state
    (:class:`~monai_synth.handlers.GeneratorEMAHandler`, :class:`~monai_synth.handlers.AdaptiveAugmentHandler`)
    and the checkpoint handler (resume on every rank, write on rank 0) set ``every_rank = True``.
    """
    handlers = [h for h in handlers if h is not None]
    return handlers if is_rank_zero() else [h for h in handlers if getattr(h, "every_rank", False)]


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflatten_into(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> None:
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


@torch.no_grad()
def all_reduce_gradients(modules: torch.nn.Module | Sequence[torch.nn.Module]) -> None:
    """Average the gradients of ``modules``' trainable parameters over all ranks (one all-reduce).

    A parameter without a gradient on this rank takes part with zeros (and gets the average as its
    gradient; one that no rank computed a gradient for keeps ``grad=None``), so every rank steps its
    optimiser on identical gradients. Call it after ``backward`` (and before ``GradScaler.step``) on
    every rank. No-op outside a process group.
    """
    if not is_distributed():
        return
    modules = [modules] if isinstance(modules, torch.nn.Module) else list(modules)
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    if not params:
        return
    # one presence flag per parameter rides along, so a parameter no rank computed a gradient for keeps
    # ``grad=None`` (and is skipped by the optimiser, as in a single-process run)
    present = torch.tensor([p.grad is not None for p in params], dtype=params[0].dtype, device=params[0].device)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([_flat(grads), present])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for p, used in zip(params, flat[-len(params) :].tolist()):
        grad = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
        if used == 0:
            p.grad = None
        elif p.grad is None:
            p.grad = grad.clone()
        else:
            p.grad.copy_(grad)


@torch.no_grad()
def all_reduce_buffers(modules: torch.nn.Module | Sequence[torch.nn.Module]) -> None:
    """Average the floating-point buffers (batch-norm running statistics, ``w_avg``) over all ranks."""
    if not is_distributed():
        return
    modules = [modules] if isinstance(modules, torch.nn.Module) else list(modules)
    buffers = [b for m in modules for b in m.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = _flat(buffers)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    _unflatten_into(flat, buffers)


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``module``'s parameters and buffers from rank ``src`` to every rank."""
    if not is_distributed():
        return
    tensors = list(module.parameters()) + list(module.buffers())
    for t in tensors:
        dist.broadcast(t.data, src=src)


def all_reduce_mean(values: dict[str, float], device: torch.device | str | None = None) -> dict[str, float]:
    """``{key: mean over ranks}`` of a dict of floats with the same keys on every rank (one all-reduce).

    ``device`` holds the temporary tensor (default: the GPU with NCCL, the CPU with gloo).
    """
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    device = _communication_device() if device is None else device
    flat = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    return {k: float(v) for k, v in zip(keys, flat.tolist())}


def _communication_device() -> torch.device:
    """Where small control tensors live for a collective: this process's GPU with NCCL, the CPU with gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_finite(value: torch.Tensor) -> bool:
    """``True`` when ``value`` is finite on every rank, so all ranks stop together on a NaN/inf loss."""
    finite = torch.isfinite(value.detach()).all()
    if not is_distributed():
        return bool(finite)
    flag = finite.to(device=_communication_device(), dtype=torch.int32).reshape(1)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if is_distributed():
        dist.barrier()


@contextmanager
def fail_together(what: str) -> Iterator[None]:
    """A step every rank enters; if it raises on any rank, it raises on every rank (no rank left waiting).

    The rank that failed raises its own error; the others raise ``RuntimeError`` naming ``what``. Outside
    a process group it is a plain block.
    """
    failed = True
    try:
        yield
        failed = False
    finally:
        if is_distributed():
            flag = torch.tensor([int(failed)], device=_communication_device())
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() and not failed:
                raise RuntimeError(f"{what} failed on another rank; its error is in that rank's log.")


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (pickled; small objects such as summaries)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def destroy_distributed() -> None:
    """Leave the process group (the overlays' ``finalize``); no-op when none was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
