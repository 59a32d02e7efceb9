"""Ignite/MONAI trainer for StyleGAN2 with lazy regularisation and adaptive discriminator augmentation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from monai_synth.losses import PathLengthPenalty, d_logistic_loss, g_nonsaturating_loss, r1_penalty

from .gan_trainer import GANTrainerBase

__all__ = ["StyleGAN2Trainer", "lazy_regularization_optimizer_kwargs"]


def lazy_regularization_optimizer_kwargs(lr: float, betas: Sequence[float], interval: int) -> dict[str, Any]:
    """Adam ``lr``/``betas`` corrected for lazy regularisation every ``interval`` steps (StyleGAN2 Appendix B).

    With a regulariser evaluated every ``k`` minibatches, ``c = k / (k + 1)``: ``lr * c`` and ``betas ** c``.
    """
    c = interval / (interval + 1) if interval and interval > 0 else 1.0
    return {"lr": lr * c, "betas": tuple(float(b) ** c for b in betas)}


class StyleGAN2Trainer(GANTrainerBase):
    """StyleGAN2(-ADA) training as a MONAI ``Trainer``: G and D phases, lazy R1 and path-length regularisation.

    Each iteration (``i`` counted from 1):

    1. G main: non-saturating loss on ``D(augment(G(z)))``, with style mixing; optimiser step.
    2. G reg (every ``pl_interval`` iterations): path-length penalty on ``batch / pl_batch_shrink``
       fakes, multiplied by the interval; optimiser step.
    3. D main: logistic loss on augmented reals and (detached) augmented fakes; optimiser step. The mean
       ``sign(D(augment(real)))`` is reported as ``real_sign`` for the ADA controller.
    4. D reg (every ``r1_interval`` iterations): R1 on augmented reals (gradient w.r.t. the un-augmented
       reals), ``gamma / 2 * ||grad||^2`` times the interval; optimiser step.

    Conditional generators (C-SG, ``g_network.cond_channels > 0``): the batch's pair is ``image + mask``;
    every fake is drawn for a mask of the real batch (``G(z | m)``, the masks of the batch in order) and
    judged as the pair ``G(z | m) + m``, so the paired augmentation moves the conditioning mask with the
    image (intensity operations on the image only) and the discriminator sees ``D(x | m)``. R1 is the
    gradient with respect to the real image given its mask; the path-length penalty is on the image.

    MONAI's ``GanTrainer`` has one G and one D step with fixed losses and no place for lazy regularisers,
    augmentation of every discriminator input or per-phase optimiser steps, hence a ``Trainer`` subclass.
    The EMA generator and the ADA probability are updated by handlers
    (:class:`monai_synth.handlers.GeneratorEMAHandler`, :class:`monai_synth.handlers.AdaptiveAugmentHandler`).
    A non-finite loss raises :class:`~monai_synth.engines.NonFiniteLossError` before the optimiser step, so the weights and the
    last checkpoint stay good. Mixed precision (``amp``) and channels-last memory are used on CUDA only; the
    regularisers always run in float32.

    Args:
        device: training device.
        max_epochs: epochs of ``epoch_length`` iterations (bundles derive both from ``kimg``).
        train_data_loader: yields dicts with the paired tensor under ``pair_key``.
        g_network: a :class:`monai_synth.networks.nets.StyleGAN2Generator`.
        g_optimizer: its optimiser (Adam lr 0.0025, betas (0, 0.99), corrected for lazy regularisation).
        d_network: a :class:`monai_synth.networks.nets.StyleGAN2Discriminator`.
        d_optimizer: its optimiser.
        epoch_length: iterations per epoch.
        pair_key: key of the ``(B, C + M, H, W)`` tensor in each batch.
        channels: ``(start, stop)`` channel range of that tensor the GAN models (image mode: the image
            channels; mask mode: the mask channels; paired: all). ``None``: all channels.
        augment: the discriminator augmentation (``None``: no augmentation).
        r1_gamma: R1 weight (0 disables).
        r1_interval: lazy R1 interval (16).
        pl_weight: path-length weight (2; 0 disables).
        pl_interval: lazy path-length interval (4).
        pl_batch_shrink: path-length batch = batch // this (2).
        style_mixing_prob: probability of style mixing per sample (0.9).
        train_handlers: ignite handlers.
        amp: mixed precision on CUDA.
        channels_last: channels-last memory format on CUDA.
        non_blocking: non-blocking copies.
        seed: seed of the trainer's latent generator and of the data order (see
            :class:`~monai_synth.engines.GANTrainerBase`; both resume exactly from any iteration).

    Under ``torchrun`` (see :mod:`monai_synth.engines.distributed`) ``DistributedDataParallel`` cannot be
    used (the regularisers need double backward): the gradients of each phase are averaged over the
    ranks with one all-reduce of the flattened gradients before its optimiser step, the mapping network
    sees the global batch of latents, and the outputs (``real_sign`` for ADA among them) are global
    means, so weights, EMA and ``p`` stay identical on every rank.

    ``engine.state.output``: ``g_loss``, ``d_loss``, ``r1``, ``pl`` (last values), ``d_real``, ``d_fake``
    (mean probabilities), ``real_sign`` and ``ada_p`` (floats).
    """

    finite_loss_advice = (
        "Lower the learning rate or r1_gamma, check the data for NaN/inf values, or resume from the last checkpoint."
    )

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Sequence | torch.utils.data.DataLoader,
        g_network: torch.nn.Module,
        g_optimizer: Optimizer,
        d_network: torch.nn.Module,
        d_optimizer: Optimizer,
        epoch_length: int | None = None,
        pair_key: str = "pair",
        channels: Sequence[int] | None = None,
        augment: torch.nn.Module | None = None,
        r1_gamma: float = 10.0,
        r1_interval: int = 16,
        pl_weight: float = 2.0,
        pl_interval: int = 4,
        pl_batch_shrink: int = 2,
        style_mixing_prob: float = 0.9,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        channels_last: bool = False,
        non_blocking: bool = False,
        seed: int = 0,
    ) -> None:
        if r1_gamma < 0 or pl_weight < 0:
            raise ValueError(f"r1_gamma and pl_weight must be >= 0, got {r1_gamma}, {pl_weight}.")
        if r1_interval < 1 or pl_interval < 1 or pl_batch_shrink < 1:
            raise ValueError("r1_interval, pl_interval and pl_batch_shrink must be >= 1.")
        if not 0 <= style_mixing_prob <= 1:
            raise ValueError(f"style_mixing_prob must be in [0, 1], got {style_mixing_prob}.")
        device = torch.device(device)
        on_cuda = device.type == "cuda"
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            latent_dim=g_network.z_dim,
            latent_distribution="normal",
            epoch_length=epoch_length,
            train_handlers=train_handlers,
            amp=bool(amp) and on_cuda,
            non_blocking=non_blocking,
            seed=seed,
        )
        self.g_network = g_network
        self.g_optimizer = g_optimizer
        self.d_network = d_network
        self.d_optimizer = d_optimizer
        self.pair_key = pair_key
        self.channels = tuple(channels) if channels is not None else None
        self.augment = augment
        self.r1_gamma = float(r1_gamma)
        self.r1_interval = int(r1_interval)
        self.pl_penalty = PathLengthPenalty(weight=pl_weight).to(device)
        self.pl_interval = int(pl_interval)
        self.pl_batch_shrink = int(pl_batch_shrink)
        self.style_mixing_prob = float(style_mixing_prob)
        self.channels_last = bool(channels_last) and on_cuda
        if self.channels_last:
            self.g_network.to(memory_format=torch.channels_last)
            self.d_network.to(memory_format=torch.channels_last)
        self.g_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.d_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.last_r1 = 0.0
        self.last_pl = 0.0

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """:meth:`GANTrainerBase.state_dict` plus the path-length mean and the last penalties."""
        state = super().state_dict()
        state["pl_mean"] = float(self.pl_penalty.mean)
        state["last_r1"], state["last_pl"] = self.last_r1, self.last_pl
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        pl_mean = state_dict.pop("pl_mean", None)
        self.last_r1 = float(state_dict.pop("last_r1", 0.0))
        self.last_pl = float(state_dict.pop("last_pl", 0.0))
        super().load_state_dict(state_dict)
        if pl_mean is not None:
            self.pl_penalty.mean.fill_(float(pl_mean))

    def grad_scalers(self) -> dict[str, torch.amp.GradScaler]:
        return {"g_scaler": self.g_scaler, "d_scaler": self.d_scaler}

    # ------------------------------------------------------------------ helpers
    def _networks(self) -> list[torch.nn.Module]:
        # the path-length running mean is a buffer too: averaged over the ranks like w_avg and batch norms
        return [*super()._networks(), self.pl_penalty]

    @property
    def conditional(self) -> bool:
        """Whether the generator is conditioned on the batch's masks (C-SG)."""
        return getattr(self.g_network, "cond_channels", 0) > 0

    def _generate(self, num: int, reals: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(fakes, ws)``; a conditional generator draws for the masks of ``reals[:num]`` and returns pairs.

        Under torchrun the mapping sees the global batch (latents, style mixing draws, w_avg identical on every
        rank) and each rank synthesises its own rows.
        """
        ws = self.g_network.map(
            self.draw_latents(num, whole=True),
            style_mixing_prob=self.style_mixing_prob,
            generator=self.latent_generator,
        )
        ws = self.rank_rows(ws)
        if not self.conditional:
            return self.g_network.synthesis(ws, noise_mode="random"), ws
        masks = reals[:num, self.g_network.out_channels :]
        images = self.g_network.synthesis(ws, noise_mode="random", mask=masks)
        return torch.cat([images, masks.to(images.dtype)], dim=1), ws

    def _judge(self, network: torch.nn.Module, augment: torch.nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``network`` on ``x`` after ``augment`` (ADA), in channels-last memory when asked."""
        if augment is not None:
            x = augment(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return network(x)

    def _discriminate(self, x: torch.Tensor) -> torch.Tensor:
        return self._judge(self.d_network, self.augment, x)

    def _lazy_r1(
        self,
        name: str,
        gamma: float,
        network: torch.nn.Module,
        augment: torch.nn.Module | None,
        optimizer: Optimizer,
        inputs: torch.Tensor,
        wrt: torch.Tensor,
    ) -> float:
        """One lazy R1 step (float32) of ``network`` on ``inputs``, penalising the gradient w.r.t. ``wrt``.

        Returns:
            The penalty per iteration (the step's value divided by ``r1_interval``).
        """
        r1 = r1_penalty(self._judge(network, augment, inputs), wrt, gamma) * self.r1_interval
        return self.lazy_step(name, r1, network, optimizer, self.r1_interval)

    def _path_length_step(self, images: torch.Tensor, ws: torch.Tensor) -> None:
        """One lazy path-length step (float32) of the generator on ``images`` synthesised from ``ws``."""
        pl = self.pl_penalty(images.float(), ws) * self.pl_interval
        self.last_pl = self.lazy_step("Path-length penalty", pl, self.g_network, self.g_optimizer, self.pl_interval)

    def _step(
        self, loss: torch.Tensor, optimizer: Optimizer, scaler: torch.amp.GradScaler, network: torch.nn.Module
    ) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        self.sync_gradients(network)
        scaler.step(optimizer)
        scaler.update()

    def _reals(self, batchdata: dict[str, Any]) -> torch.Tensor:
        if not isinstance(batchdata, dict) or self.pair_key not in batchdata:
            raise ValueError(f"Each batch must be a dict holding the paired tensor under {self.pair_key!r}.")
        reals = torch.as_tensor(batchdata[self.pair_key]).to(self.state.device, non_blocking=self.non_blocking)
        reals = reals.as_subclass(torch.Tensor).float()
        if self.channels is not None:
            reals = reals[:, self.channels[0] : self.channels[1]]
        if self.conditional and reals.shape[1] != self.g_network.out_channels + self.g_network.cond_channels:
            raise ValueError(
                f"The conditional generator draws {self.g_network.out_channels} image channels for "
                f"{self.g_network.cond_channels} mask channels, but the training pairs have {reals.shape[1]} channels."
            )
        return reals

    # ------------------------------------------------------------------ iteration
    def _iteration(self, engine: StyleGAN2Trainer, batchdata: dict[str, Any]) -> dict[str, float]:
        reals = engine._reals(batchdata)
        b = reals.shape[0]
        it = engine.state.iteration
        autocast = torch.autocast(device_type=engine.state.device.type, enabled=engine.amp)
        g, d = engine.g_network, engine.d_network
        g.train()
        d.train()

        # G main
        g.requires_grad_(True)
        d.requires_grad_(False)
        with autocast:
            fakes, _ = engine._generate(b, reals)
            g_loss = g_nonsaturating_loss(engine._discriminate(fakes).float())
        engine.check_finite("Generator loss", g_loss)
        engine._step(g_loss, engine.g_optimizer, engine.g_scaler, g)

        # G reg: path length (float32)
        if engine.pl_penalty.weight > 0 and it % engine.pl_interval == 0:
            fakes, ws = engine._generate(max(1, b // engine.pl_batch_shrink), reals)
            if engine.conditional:
                fakes = fakes[:, : g.out_channels]
            engine._path_length_step(fakes, ws)

        # D main
        g.requires_grad_(False)
        d.requires_grad_(True)
        with torch.no_grad(), autocast:
            fakes, _ = engine._generate(b, reals)
        with autocast:
            fake_logits = engine._discriminate(fakes.detach()).float()
            real_logits = engine._discriminate(reals).float()
            d_loss = d_logistic_loss(real_logits, fake_logits)
        engine.check_finite("Discriminator loss", d_loss)
        engine._step(d_loss, engine.d_optimizer, engine.d_scaler, d)

        # D reg: R1 (float32)
        if engine.r1_gamma > 0 and it % engine.r1_interval == 0:
            reals_r1 = reals.detach().requires_grad_(True)
            inputs = reals_r1
            if engine.conditional:  # the gradient with respect to the image, given its mask
                c = g.out_channels
                reals_r1 = reals[:, :c].detach().requires_grad_(True)
                inputs = torch.cat([reals_r1, reals[:, c:].detach()], dim=1)
            engine.last_r1 = engine._lazy_r1(
                "R1 penalty", engine.r1_gamma, d, engine.augment, engine.d_optimizer, inputs, reals_r1
            )
        g.requires_grad_(True)

        return engine.synchronize(
            {
                "g_loss": g_loss.item(),
                "d_loss": d_loss.item(),
                "r1": engine.last_r1,
                "pl": engine.last_pl,
                "d_real": torch.sigmoid(real_logits.detach()).mean().item(),
                "d_fake": torch.sigmoid(fake_logits.detach()).mean().item(),
                "real_sign": torch.sign(real_logits.detach()).mean().item(),
                "ada_p": float(engine.augment.p)
                if engine.augment is not None and hasattr(engine.augment, "p")
                else 0.0,
            }
        )
