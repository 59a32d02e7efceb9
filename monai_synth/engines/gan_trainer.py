"""What every GAN trainer shares: the latent RNG, the finite-loss check, resumable data order and state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.engine.deterministic import update_dataloader
from monai.engines import Trainer
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from monai_synth.data.samplers import ResumableSampler, pass_seed
from monai_synth.networks.latents import sample_latents

from . import distributed

__all__ = ["GANTrainerBase", "NonFiniteLossError", "check_finite_loss", "resumable_loader"]

LATENT_DISTRIBUTIONS = ("uniform", "normal")


class NonFiniteLossError(FloatingPointError):
    """A GAN loss became NaN or infinite; raised before any optimiser step so the weights stay clean."""


def check_finite_loss(name: str, value: torch.Tensor, iteration: int, advice: str) -> None:
    """Raise :class:`NonFiniteLossError` naming the loss and the iteration when ``value`` is NaN or infinite.

    Args:
        name: loss name for the message (``"Generator loss"``).
        value: the loss tensor (any shape).
        iteration: current iteration, reported in the message.
        advice: what the user can do about it.

    Raises:
        NonFiniteLossError: ``value`` holds a NaN or an infinity.
    """
    if not torch.isfinite(value).all():
        raise NonFiniteLossError(
            f"{name} is {value.item() if value.numel() == 1 else value.tolist()} at iteration {iteration}: training "
            f"stopped before updating the weights, so the last checkpoint is still good. {advice}"
        )


def resumable_loader(
    loader: Any, seed: int, num_replicas: int = 1, rank: int = 0
) -> tuple[Any, ResumableSampler | None]:
    """Return ``loader`` with its order made a function of ``(seed, pass)`` and the sampler that sets it.

    A map-style ``DataLoader`` whose sampler is a plain ``RandomSampler`` (``shuffle=True``) or
    ``SequentialSampler`` is rebuilt (``ignite.engine.deterministic.update_dataloader``) around a
    :class:`~monai_synth.data.samplers.ResumableSampler` with the same shuffling, and given its own
    ``generator`` so that creating its iterator no longer draws from the global RNG (which the checkpoint
    restores mid-pass). A loader that already uses a ``ResumableSampler`` is kept. Anything else (lists,
    custom samplers, iterable datasets) is returned unchanged with ``None``.

    With ``num_replicas > 1`` (``torch.distributed``) the sampler is rank-aware: each rank reads its
    ``batch_size`` rows of every global batch (see :class:`~monai_synth.data.samplers.ResumableSampler`).

    Args:
        loader: the training data (``DataLoader`` or any iterable).
        seed: base seed of the per-pass orders.
        num_replicas: number of processes sharing each global batch.
        rank: this process's rank.

    Returns:
        ``(loader, sampler)``: the loader to iterate and its resumable sampler, or ``None``.

    Raises:
        ValueError: ``num_replicas > 1`` and the loader cannot be given a rank-aware sampler (every rank
            would read the same data).
    """
    loader, sampler = _resumable_loader(loader, seed, num_replicas, rank)
    if sampler is None and num_replicas > 1:
        raise ValueError(
            "Multi-process training needs a map-style DataLoader with shuffle=True or shuffle=False (and no sampler "
            "of its own), so that each rank can read its share of every global batch; got "
            f"{type(loader).__name__}."
        )
    return loader, sampler


def _resumable_loader(loader: Any, seed: int, num_replicas: int, rank: int) -> tuple[Any, ResumableSampler | None]:
    if not isinstance(loader, DataLoader) or not isinstance(loader.batch_sampler, BatchSampler):
        return loader, None
    sampler = loader.batch_sampler.sampler
    if isinstance(sampler, ResumableSampler):
        return loader, sampler
    # shuffle=True builds exactly this; RandomSampler(replacement=True / num_samples=...) is left alone
    plain_random = type(sampler) is RandomSampler and not sampler.replacement and sampler._num_samples is None
    if not (plain_random or type(sampler) is SequentialSampler):
        return loader, None
    resumable = ResumableSampler(
        len(loader.dataset),
        shuffle=plain_random,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
        batch_size=loader.batch_size if num_replicas > 1 else None,
    )
    loader = update_dataloader(loader, BatchSampler(resumable, loader.batch_size, loader.drop_last))
    loader.generator = torch.Generator().manual_seed(pass_seed(seed, 0))
    return loader, resumable


class GANTrainerBase(Trainer):
    """MONAI ``Trainer`` base of the GAN trainers: latents, finite losses, resumable data order and state.

    It owns what :class:`~monai_synth.engines.PairedGANTrainer` and
    :class:`~monai_synth.engines.StyleGAN2Trainer` share:

    - ``latent_generator``: a CPU ``torch.Generator`` seeded with ``seed``; every latent is drawn from it by
      :meth:`draw_latents`, and its state is in :meth:`state_dict`, so a resumed run draws the latents of
      an uninterrupted one.
    - :meth:`check_finite`: a NaN/inf loss raises :class:`NonFiniteLossError` before any optimiser step.
    - Resumable data order (see :func:`resumable_loader`): each pass over the data has an order fixed by
      ``(seed, pass)``, and whenever ignite (re)creates the data iterator the sampler is set to the pass
      and position of the next iteration (``engine.state.iteration``). A run resumed from a checkpoint
      taken mid-pass therefore sees the batches of the uninterrupted run, whatever ``epoch_length`` is.
    - :meth:`state_dict` / :meth:`load_state_dict`: ignite's state plus the latent RNG and the batch size;
      resuming with another batch size is refused (it changes the data order and every update).
    - Multi-process training (``torchrun``, see :mod:`monai_synth.engines.distributed`): when a process
      group is initialised, each rank reads its ``batch_size`` rows of every global batch of
      ``batch_size * world_size`` samples and of every global batch of latents; subclasses call
      :meth:`sync_gradients` after each backward and return :meth:`synchronize` from ``_iteration``
      (buffers and logged outputs averaged over the ranks). Networks are broadcast from rank 0 when the
      run starts (after a resume), and a fresh run then reseeds the global RNG of ranks > 0 with
      ``seed + rank`` so that their augmentation and noise differ. The global batch is part of the
      state: resuming with another number of processes is refused like another batch size.

    Args:
        device: training device.
        max_epochs: epochs of ``epoch_length`` iterations.
        train_data_loader: the training data.
        latent_dim: size of a latent vector.
        latent_distribution: ``"uniform"`` (U[-1, 1]) or ``"normal"`` (N(0, 1)).
        epoch_length: iterations per epoch (``len(train_data_loader)`` by default).
        train_handlers: ignite handlers with ``attach``.
        amp: mixed precision (already restricted to CUDA by the subclass).
        non_blocking: non-blocking host-to-device copies.
        seed: seed of the latent generator and of the data order.

    Raises:
        ValueError: unknown ``latent_distribution``.
    """

    #: what :meth:`check_finite` tells the user to do about a NaN/inf loss
    finite_loss_advice = (
        "Lower the learning rate, check the data for NaN/inf values, or resume from the last checkpoint."
    )

    def __init__(
        self,
        device: torch.device,
        max_epochs: int,
        train_data_loader: Sequence | DataLoader,
        latent_dim: int,
        latent_distribution: str = "normal",
        epoch_length: int | None = None,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        non_blocking: bool = False,
        seed: int = 0,
    ) -> None:
        if latent_distribution not in LATENT_DISTRIBUTIONS:
            raise ValueError(f"latent_distribution must be 'uniform' or 'normal', got {latent_distribution!r}.")
        self.world_size, self.rank = distributed.world_size(), distributed.rank()
        loader, self.data_sampler = resumable_loader(train_data_loader, int(seed), self.world_size, self.rank)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            handlers=train_handlers,
            amp=amp,
            decollate=False,
        )
        self.seed = int(seed)
        self.latent_dim = int(latent_dim)
        self.latent_distribution = latent_distribution
        self.latent_generator = torch.Generator(device="cpu").manual_seed(self.seed)
        # the rebuilt loader has a batch sampler and no batch_size of its own
        self.batch_size = getattr(train_data_loader, "batch_size", None)
        if self.world_size > 1:
            self.add_event_handler(Events.STARTED, self._broadcast_networks)
        if self.data_sampler is not None:
            # ignite (re)creates the data iterator after EPOCH_STARTED on (re)start and after
            # DATALOADER_STOP_ITERATION when a pass is used up: position the sampler just before
            self.add_event_handler(Events.EPOCH_STARTED, self._position_data)
            self.add_event_handler(Events.DATALOADER_STOP_ITERATION, self._position_data)

    @property
    def global_batch_size(self) -> int | None:
        """Samples per optimiser step over all processes: ``batch_size * world_size``."""
        return None if self.batch_size is None else self.batch_size * self.world_size

    # ------------------------------------------------------------------ latents and losses
    def draw_latents(self, num: int, whole: bool = False) -> torch.Tensor:
        """``(num, latent_dim)`` latents from the trainer's own generator, moved to the training device.

        Under ``torch.distributed`` every rank draws the global ``(num * world_size, latent_dim)`` block
        (so the latent generator stays identical on all ranks) and keeps its rows (:meth:`rank_rows`),
        or the whole block with ``whole=True``.
        """
        z = sample_latents(
            num * self.world_size,
            self.latent_dim,
            generator=self.latent_generator,
            distribution=self.latent_distribution,
        )
        z = z.to(self.state.device, non_blocking=self.non_blocking)
        return z if whole else self.rank_rows(z)

    def rank_rows(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global ``(world_size * n, ...)`` batch: ``x[rank * n : (rank + 1) * n]``."""
        if self.world_size == 1:
            return x
        n = x.shape[0] // self.world_size
        return x[self.rank * n : (self.rank + 1) * n]

    def check_finite(self, name: str, value: torch.Tensor) -> None:
        """:func:`check_finite_loss` at the current iteration with this trainer's advice.

        Under ``torch.distributed`` the check is collective: a NaN on any rank stops every rank.
        """
        if not distributed.all_finite(value):
            if bool(torch.isfinite(value.detach()).all()):
                name = f"{name} (finite on rank {self.rank}, not on another rank)"
                value = torch.tensor(float("nan"))
            check_finite_loss(name, value, self.state.iteration, self.finite_loss_advice)

    # ------------------------------------------------------------------ multi-process
    def _networks(self) -> list[torch.nn.Module]:
        return [m for m in (getattr(self, "g_network", None), getattr(self, "d_network", None)) if m is not None]

    def _broadcast_networks(self, engine: Engine) -> None:
        for module in self._networks():
            distributed.broadcast_module(module)
        if engine.state.iteration == 0 and self.rank > 0:
            # a fresh run: ranks built identical networks from the same seed; from here on their global RNG
            # (augmentation, noise) must differ as between samples of one batch. A resumed run has its own
            # stream back from the checkpoint (GANCheckpointHandler keeps every rank's RNG state).
            distributed.seed_rank(self.seed)

    def sync_gradients(self, *modules: torch.nn.Module) -> None:
        """Average the gradients of ``modules`` over the ranks (after ``backward``, before the optimiser step)."""
        if self.world_size > 1:
            distributed.all_reduce_gradients(modules)

    def lazy_step(
        self,
        name: str,
        penalty: torch.Tensor,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        interval: int,
    ) -> float:
        """One lazy regularisation step (R1, path length; float32, no AMP scaler) of ``network``.

        Args:
            name: the penalty's name in the non-finite error.
            penalty: the penalty already multiplied by ``interval`` (applied every ``interval`` iterations).
            network: the network whose gradients are averaged over the ranks.
            optimizer: its optimiser.
            interval: the lazy interval.

        Returns:
            The penalty per iteration (``penalty / interval``), for logging.
        """
        self.check_finite(name, penalty)
        optimizer.zero_grad(set_to_none=True)
        penalty.backward()
        self.sync_gradients(network)
        optimizer.step()
        return penalty.item() / interval

    def synchronize(self, output: dict[str, float]) -> dict[str, float]:
        """End of an iteration: average the networks' floating buffers and the ``output`` floats over the ranks.

        The averaged output feeds the handlers, so the ADA statistic (``real_sign``) and thus ``p`` are
        identical on every rank, and logs show global means. Identity in a single-process run.
        """
        if self.world_size == 1:
            return output
        distributed.all_reduce_buffers(self._networks())
        return distributed.all_reduce_mean(output, device=self.state.device)

    # ------------------------------------------------------------------ data order
    def _position_data(self, engine: Engine) -> None:
        batches = len(self.data_loader)
        if batches == 0:
            return
        data_pass, batch = divmod(engine.state.iteration, batches)
        self.data_sampler.set_pass(data_pass, batch * self.batch_size * self.world_size)
        self.data_loader.generator.manual_seed(pass_seed(self.seed, data_pass))

    # ------------------------------------------------------------------ state
    def grad_scalers(self) -> dict[str, torch.amp.GradScaler]:
        """The AMP scalers checkpointed with the engine state, by state key (none here; trainers add theirs)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """ignite engine state (iteration, epoch, ...) plus the latent generator state, the batch size and the
        AMP scaler states (:meth:`grad_scalers`)."""
        state = dict(super().state_dict())
        state["latent_rng"] = self.latent_generator.get_state()
        state.update({key: scaler.state_dict() for key, scaler in self.grad_scalers().items()})
        if self.batch_size is not None:
            state["batch_size"] = int(self.batch_size)
        if self.world_size > 1:
            state["world_size"] = self.world_size
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        Raises:
            ValueError: the checkpoint was trained with another batch size or number of processes.
        """
        state_dict = dict(state_dict)
        scalers = {key: (scaler, state_dict.pop(key, None)) for key, scaler in self.grad_scalers().items()}
        rng = state_dict.pop("latent_rng", None)
        saved_batch_size = state_dict.pop("batch_size", None)
        saved_world_size = int(state_dict.pop("world_size", 1))
        if saved_world_size != self.world_size:
            raise ValueError(
                f"the checkpoint was trained with {saved_world_size} process(es) and this run has {self.world_size}: "
                "the global batch (batch_size x processes) sets the data order and every update. Resume with "
                f"{saved_world_size} process(es) (torchrun --nproc_per_node={saved_world_size}), or start a new run "
                "in another output_dir."
            )
        if saved_batch_size is not None and self.batch_size is not None and saved_batch_size != self.batch_size:
            raise ValueError(
                f"batch_size is {self.batch_size} now but the checkpoint was trained with batch_size "
                f"{saved_batch_size}: a resumed run cannot change it (it sets the data order and every update). "
                f"Resume with batch_size {saved_batch_size}, or start a new run with batch_size {self.batch_size} "
                "in another output_dir."
            )
        super().load_state_dict(state_dict)
        if rng is not None:
            self.latent_generator.set_state(rng)
        for scaler, saved in scalers.values():
            if saved:
                scaler.load_state_dict(saved)
