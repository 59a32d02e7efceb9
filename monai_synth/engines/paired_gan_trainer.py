"""Ignite/MONAI trainer for paired GANs that see image and mask channels as one tensor (Neff et al.), with ADA and R1."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from monai_synth.losses import d_logistic_loss, g_nonsaturating_loss, r1_penalty

from .gan_trainer import GANTrainerBase

__all__ = ["PairedGANTrainer"]


class PairedGANTrainer(GANTrainerBase):
    """Adversarial training of a generator that emits ``(B, C + M, H, W)`` image + mask tensors.

    Each iteration: one discriminator step on a real batch and fakes from fresh latents (fakes
    detached), then one generator step on new fakes (non-saturating loss). Latents are drawn from
    U[-1, 1] (Neff et al.) or N(0, 1).

    MONAI's ``GanTrainer`` is close but does not fit, which is why this subclasses ``Trainer``:
    it backpropagates the discriminator loss through the generator output it later reuses, has no
    mixed-precision scaler, samples latents only from N(0, 1), and steps the optimisers even when a
    loss is NaN. Here a non-finite loss raises :class:`NonFiniteLossError` *before* any optimiser step,
    so the weights (and the last checkpoint) stay good.

    Small-data stabilisers (all off by default, so the trainer alone reproduces Neff et al.):
    ``augment`` (a :class:`~monai_synth.augment.PairedAugmentPipe`) is applied to every batch the
    discriminator sees, real and generated, in both the D and the G step (adaptive discriminator
    augmentation when its ``p`` is tuned by :class:`~monai_synth.handlers.AdaptiveAugmentHandler` from
    ``real_sign``); ``r1_gamma > 0`` adds the R1 penalty on augmented reals every ``r1_interval``
    iterations (lazy, multiplied by the interval, float32). The generator EMA is a handler
    (:class:`~monai_synth.handlers.GeneratorEMAHandler`).

    Args:
        device: device to train on.
        max_epochs: number of epochs; an epoch is ``epoch_length`` iterations.
        train_data_loader: yields dicts holding the paired tensor under ``pair_key``.
        g_network: generator ``(B, latent_dim) -> (B, C + M, H, W)`` in [-1, 1].
        g_optimizer: generator optimiser.
        d_network: discriminator ``(B, C + M, H, W) -> (B, 1)`` logits.
        d_optimizer: discriminator optimiser.
        latent_dim: size of the latent vector.
        epoch_length: iterations per epoch; the loader is restarted as needed. Defaults to
            ``len(train_data_loader)``. The Neff et al. schedule is 12,000 iterations.
        pair_key: key of the paired tensor in each batch.
        latent_distribution: ``"uniform"`` (U[-1, 1]) or ``"normal"``.
        d_train_steps: discriminator steps per generator step.
        train_handlers: ignite handlers (checkpoints, sample grids, stats, MLflow) with ``attach``.
        amp: mixed precision (CUDA only; ignored on CPU, where training runs in float32).
        non_blocking: non-blocking host-to-device copies.
        seed: seed of the trainer's own latent random generator and of the data order (see
            :class:`~monai_synth.engines.GANTrainerBase`). Both are part of :meth:`state_dict`, so a run
            resumed from any iteration draws the latents and batches of an uninterrupted one.
        g_loss_function: generator loss on fake logits (non-saturating by default).
        d_loss_function: discriminator loss on (real logits, fake logits) (logistic by default).
        augment: discriminator augmentation applied to real and fake pairs before ``d_network``
            (``None``: none, Neff et al.).
        r1_gamma: R1 weight (0 disables).
        r1_interval: lazy R1 interval in iterations.

    Under ``torchrun`` (see :mod:`monai_synth.engines.distributed`) each rank trains on its share of the
    global batch (``batch_size`` per rank, ``batch_size x world_size`` per step) and the gradients are
    averaged over the ranks after every backward, so every rank holds the same weights; outputs are
    global means.

    ``engine.state.output`` after each iteration: ``{"g_loss", "d_loss", "d_real", "d_fake"}`` floats,
    where ``d_real``/``d_fake`` are the mean discriminator probabilities on real and fake pairs; with
    ``augment`` also ``real_sign`` (mean ``sign(D(augment(real)))``, the ADA statistic) and ``ada_p``;
    with ``r1_gamma > 0`` also ``r1`` (last penalty).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Sequence | torch.utils.data.DataLoader,
        g_network: torch.nn.Module,
        g_optimizer: Optimizer,
        d_network: torch.nn.Module,
        d_optimizer: Optimizer,
        latent_dim: int,
        epoch_length: int | None = None,
        pair_key: str = "pair",
        latent_distribution: str = "uniform",
        d_train_steps: int = 1,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        non_blocking: bool = False,
        g_loss_function: Callable = g_nonsaturating_loss,
        d_loss_function: Callable = d_logistic_loss,
        seed: int = 0,
        augment: torch.nn.Module | None = None,
        r1_gamma: float = 0.0,
        r1_interval: int = 16,
    ) -> None:
        if d_train_steps < 1:
            raise ValueError(f"d_train_steps must be >= 1, got {d_train_steps}.")
        if r1_gamma < 0 or r1_interval < 1:
            raise ValueError(f"r1_gamma must be >= 0 and r1_interval >= 1, got {r1_gamma}, {r1_interval}.")
        device = torch.device(device)
        amp = bool(amp) and device.type == "cuda"
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            latent_dim=latent_dim,
            latent_distribution=latent_distribution,
            epoch_length=epoch_length,
            train_handlers=train_handlers,
            amp=amp,
            non_blocking=non_blocking,
            seed=seed,
        )
        self.g_network = g_network
        self.g_optimizer = g_optimizer
        self.d_network = d_network
        self.d_optimizer = d_optimizer
        self.pair_key = pair_key
        self.d_train_steps = int(d_train_steps)
        self.g_loss_function = g_loss_function
        self.d_loss_function = d_loss_function
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=amp)
        self.augment = augment
        self.r1_gamma = float(r1_gamma)
        self.r1_interval = int(r1_interval)
        self.last_r1 = 0.0

    def sample_latents(self, num: int) -> torch.Tensor:
        """``(num, latent_dim)`` latents from the trainer's own generator (:meth:`draw_latents`)."""
        return self.draw_latents(num)

    def state_dict(self) -> dict[str, Any]:
        """:meth:`GANTrainerBase.state_dict` plus the last R1 penalty."""
        state = super().state_dict()
        if self.r1_gamma > 0:
            state["last_r1"] = self.last_r1
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.last_r1 = float(state_dict.pop("last_r1", 0.0))
        super().load_state_dict(state_dict)

    def grad_scalers(self) -> dict[str, torch.amp.GradScaler]:
        return {"grad_scaler": self.grad_scaler}

    def _discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """Discriminator logits of ``augment(x)`` (of ``x`` without augmentation)."""
        return self.d_network(self.augment(x) if self.augment is not None else x)

    def _iteration(self, engine: PairedGANTrainer, batchdata: dict[str, Any]) -> dict[str, float]:
        if batchdata is None or engine.pair_key not in batchdata:
            raise ValueError(f"Each batch must be a dict holding the paired tensor under {engine.pair_key!r}.")
        reals = torch.as_tensor(batchdata[engine.pair_key]).to(engine.state.device, non_blocking=engine.non_blocking)
        reals = reals.as_subclass(torch.Tensor) if hasattr(reals, "as_subclass") else reals
        batch_size = reals.shape[0]
        autocast = torch.autocast(device_type=engine.state.device.type, enabled=engine.amp)

        engine.g_network.train()
        engine.d_network.train()
        for _ in range(engine.d_train_steps):
            with torch.no_grad(), autocast:
                fakes = engine.g_network(engine.draw_latents(batch_size))
            with autocast:
                real_logits = engine._discriminate(reals)
                fake_logits = engine._discriminate(fakes.detach())
                d_loss = engine.d_loss_function(real_logits.float(), fake_logits.float())
            engine.check_finite("Discriminator loss", d_loss)
            engine.d_optimizer.zero_grad(set_to_none=True)
            engine.grad_scaler.scale(d_loss).backward()
            engine.sync_gradients(engine.d_network)
            engine.grad_scaler.step(engine.d_optimizer)
            engine.grad_scaler.update()

        if engine.r1_gamma > 0 and engine.state.iteration % engine.r1_interval == 0:
            reals_r1 = reals.detach().float().requires_grad_(True)
            r1 = r1_penalty(engine._discriminate(reals_r1).float(), reals_r1, engine.r1_gamma) * engine.r1_interval
            engine.last_r1 = engine.lazy_step(
                "R1 penalty", r1, engine.d_network, engine.d_optimizer, engine.r1_interval
            )

        with autocast:
            fakes = engine.g_network(engine.draw_latents(batch_size))
            g_logits = engine._discriminate(fakes)
            g_loss = engine.g_loss_function(g_logits.float())
        engine.check_finite("Generator loss", g_loss)
        engine.g_optimizer.zero_grad(set_to_none=True)
        engine.grad_scaler.scale(g_loss).backward()
        engine.sync_gradients(engine.g_network)
        engine.grad_scaler.step(engine.g_optimizer)
        engine.grad_scaler.update()

        output = {
            "g_loss": g_loss.item(),
            "d_loss": d_loss.item(),
            "d_real": torch.sigmoid(real_logits.detach().float()).mean().item(),
            "d_fake": torch.sigmoid(fake_logits.detach().float()).mean().item(),
        }
        if engine.augment is not None:
            output["real_sign"] = torch.sign(real_logits.detach().float()).mean().item()
            output["ada_p"] = float(getattr(engine.augment, "p", 0.0))
        if engine.r1_gamma > 0:
            output["r1"] = engine.last_r1
        return engine.synchronize(output)
