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


def resumable_loader(loader: Any, seed: int) -> tuple[Any, ResumableSampler | None]:
    """Return ``loader`` with its order made a function of ``(seed, pass)`` and the sampler that sets it.

    A map-style ``DataLoader`` whose sampler is a plain ``RandomSampler`` (``shuffle=True``) or
    ``SequentialSampler`` is rebuilt (``ignite.engine.deterministic.update_dataloader``) around a
    :class:`~monai_synth.data.samplers.ResumableSampler` with the same shuffling, and given its own
    ``generator`` so that creating its iterator no longer draws from the global RNG (which the checkpoint
    restores mid-pass). A loader that already uses a ``ResumableSampler`` is kept. Anything else (lists,
    custom samplers, iterable datasets) is returned unchanged with ``None``.

    Args:
        loader: the training data (``DataLoader`` or any iterable).
        seed: base seed of the per-pass orders.

    Returns:
        ``(loader, sampler)``: the loader to iterate and its resumable sampler, or ``None``.
    """
    if not isinstance(loader, DataLoader) or not isinstance(loader.batch_sampler, BatchSampler):
        return loader, None
    sampler = loader.batch_sampler.sampler
    if isinstance(sampler, ResumableSampler):
        return loader, sampler
    # shuffle=True builds exactly this; RandomSampler(replacement=True / num_samples=...) is left alone
    plain_random = type(sampler) is RandomSampler and not sampler.replacement and sampler._num_samples is None
    if not (plain_random or type(sampler) is SequentialSampler):
        return loader, None
    resumable = ResumableSampler(len(loader.dataset), shuffle=plain_random, seed=seed)
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
        loader, self.data_sampler = resumable_loader(train_data_loader, int(seed))
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
        if self.data_sampler is not None:
            # ignite (re)creates the data iterator after EPOCH_STARTED on (re)start and after
            # DATALOADER_STOP_ITERATION when a pass is used up: position the sampler just before
            self.add_event_handler(Events.EPOCH_STARTED, self._position_data)
            self.add_event_handler(Events.DATALOADER_STOP_ITERATION, self._position_data)

    # ------------------------------------------------------------------ latents and losses
    def draw_latents(self, num: int) -> torch.Tensor:
        """``(num, latent_dim)`` latents from the trainer's own generator, moved to the training device."""
        z = sample_latents(num, self.latent_dim, generator=self.latent_generator, distribution=self.latent_distribution)
        return z.to(self.state.device, non_blocking=self.non_blocking)

    def check_finite(self, name: str, value: torch.Tensor) -> None:
        """:func:`check_finite_loss` at the current iteration with this trainer's advice."""
        check_finite_loss(name, value, self.state.iteration, self.finite_loss_advice)

    # ------------------------------------------------------------------ data order
    def _position_data(self, engine: Engine) -> None:
        batches = len(self.data_loader)
        if batches == 0:
            return
        data_pass, batch = divmod(engine.state.iteration, batches)
        self.data_sampler.set_pass(data_pass, batch * self.batch_size)
        self.data_loader.generator.manual_seed(pass_seed(self.seed, data_pass))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """ignite engine state (iteration, epoch, ...) plus the latent generator state and the batch size."""
        state = dict(super().state_dict())
        state["latent_rng"] = self.latent_generator.get_state()
        if self.batch_size is not None:
            state["batch_size"] = int(self.batch_size)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        Raises:
            ValueError: the checkpoint was trained with another batch size.
        """
        state_dict = dict(state_dict)
        rng = state_dict.pop("latent_rng", None)
        saved_batch_size = state_dict.pop("batch_size", None)
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
