"""Semi-supervised SemanticGAN training (Li et al. CVPR 2021) as a MONAI ``Trainer``: D_r on images, D_m on pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.optim import Optimizer
from torch.utils.data import Dataset

from monai_synth.losses import d_logistic_loss, g_nonsaturating_loss
from monai_synth.networks.nets.semantic_stylegan2 import encode_mask_logits

from .stylegan2_trainer import StyleGAN2Trainer

__all__ = ["SemanticGANTrainer"]


class SemanticGANTrainer(StyleGAN2Trainer):
    """SemanticGAN training: the image GAN on every real image, the mask GAN on the few labelled pairs.

    The data loader yields batches of real **images** (labelled and unlabelled alike, under ``image_key``);
    labelled **pairs** (the paired encoding under ``pair_key``) are drawn from ``labelled_data`` each
    iteration, ``labelled_batch_size`` of them, with indices fixed by ``(seed, iteration)`` so a resumed run
    draws the pairs of an uninterrupted one. Each iteration (``i`` counted from 1):

    1. G main: ``softplus(-D_r(aug(x_fake)))`` + ``mask_weight * softplus(-D_m(aug_m([x_fake.detach(),
       m_fake])))``. With ``detach_mask_input`` (default, the paper's rule) the mask branch reads detached
       synthesis features, so ``D_m``'s gradient reaches only the generator's ``to_masks`` layers; without
       it, only the image *input* of ``D_m`` is detached (the reference code), and the mask loss also trains
       the shared synthesis layers. Optimiser step.
    2. G reg (every ``pl_interval``): path-length penalty on the image output.
    3. D_r main: logistic loss on augmented real and generated images; D_m main: logistic loss on augmented
       labelled pairs and generated pairs (image + soft mask encoding). Optimiser steps.
    4. Lazy R1 on each (``r1_gamma`` / ``r1_interval`` for D_r, ``mask_r1_gamma`` for D_m).

    ``augment`` (image ADA) is applied to everything ``D_r`` sees, ``mask_augment`` (paired ADA: geometric
    transforms move image and mask together) to everything ``D_m`` sees; their probabilities are tuned by two
    :class:`~monai_synth.handlers.AdaptiveAugmentHandler` from ``real_sign`` and ``mask_real_sign``.

    Args:
        device, max_epochs, train_data_loader, g_network, g_optimizer, d_network, d_optimizer, epoch_length,
            r1_gamma, r1_interval, pl_weight, pl_interval, pl_batch_shrink, style_mixing_prob,
            train_handlers, amp, channels_last, non_blocking, seed: as
            :class:`~monai_synth.engines.StyleGAN2Trainer` (``g_network`` a
            :class:`~monai_synth.networks.nets.SemanticStyleGAN2Generator`, ``d_network`` the image-mode D_r).
        mask_network: ``D_m``, a paired-mode :class:`~monai_synth.networks.nets.StyleGAN2Discriminator`
            with the generator's mask channels.
        mask_optimizer: its optimiser.
        labelled_data: a map-style dataset of dicts holding the paired tensor under ``pair_key``.
        labelled_batch_size: pairs per iteration for ``D_m`` (default: the image batch size).
        image_key: key of the ``(B, C, S, S)`` images in the loader's batches.
        pair_key: key of the ``(C + M, S, S)`` pair in ``labelled_data`` items.
        augment: image augmentation for ``D_r`` (``None``: none).
        mask_augment: paired augmentation for ``D_m`` (``None``: none).
        mask_weight: weight of the generator's ``D_m`` loss.
        mask_r1_gamma: R1 weight of ``D_m`` (0 disables).
        detach_mask_input: see step 1.

    ``engine.state.output``: ``g_loss``, ``g_mask_loss``, ``d_loss``, ``mask_d_loss``, ``r1``, ``mask_r1``,
    ``pl``, ``d_real``, ``d_fake``, ``mask_d_real``, ``mask_d_fake``, ``real_sign``, ``mask_real_sign``,
    ``ada_p``, ``mask_ada_p``.

    Raises:
        ValueError: empty ``labelled_data``, a ``D_m`` whose input channels are not the generator's pair
            channels, a negative ``mask_r1_gamma``.
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
        mask_network: torch.nn.Module,
        mask_optimizer: Optimizer,
        labelled_data: Dataset,
        labelled_batch_size: int | None = None,
        epoch_length: int | None = None,
        image_key: str = "image",
        pair_key: str = "pair",
        augment: torch.nn.Module | None = None,
        mask_augment: torch.nn.Module | None = None,
        mask_weight: float = 1.0,
        r1_gamma: float = 10.0,
        mask_r1_gamma: float = 10.0,
        r1_interval: int = 16,
        pl_weight: float = 2.0,
        pl_interval: int = 4,
        pl_batch_shrink: int = 2,
        style_mixing_prob: float = 0.9,
        detach_mask_input: bool = True,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        channels_last: bool = False,
        non_blocking: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            g_network=g_network,
            g_optimizer=g_optimizer,
            d_network=d_network,
            d_optimizer=d_optimizer,
            epoch_length=epoch_length,
            pair_key=pair_key,
            channels=None,
            augment=augment,
            r1_gamma=r1_gamma,
            r1_interval=r1_interval,
            pl_weight=pl_weight,
            pl_interval=pl_interval,
            pl_batch_shrink=pl_batch_shrink,
            style_mixing_prob=style_mixing_prob,
            train_handlers=train_handlers,
            amp=amp,
            channels_last=channels_last,
            non_blocking=non_blocking,
            seed=seed,
        )
        if len(labelled_data) == 0:
            raise ValueError("SemanticGANTrainer: labelled_data is empty; D_m needs labelled image/mask pairs.")
        if mask_r1_gamma < 0:
            raise ValueError(f"mask_r1_gamma must be >= 0, got {mask_r1_gamma}.")
        pair_channels = g_network.image_channels + g_network.mask_channels
        if getattr(mask_network, "in_channels", pair_channels) != pair_channels:
            raise ValueError(
                f"SemanticGANTrainer: D_m judges {mask_network.in_channels} channels but the generator's pairs have "
                f"{pair_channels} (image {g_network.image_channels} + mask {g_network.mask_channels})."
            )
        self.mask_network = mask_network
        self.mask_optimizer = mask_optimizer
        self.labelled_data = labelled_data
        self.labelled_batch_size = int(labelled_batch_size) if labelled_batch_size else None
        self.image_key = image_key
        self.mask_augment = mask_augment
        self.mask_weight = float(mask_weight)
        self.mask_r1_gamma = float(mask_r1_gamma)
        self.detach_mask_input = bool(detach_mask_input)
        if self.channels_last:
            self.mask_network.to(memory_format=torch.channels_last)
        self.mask_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.last_mask_r1 = 0.0

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """:meth:`StyleGAN2Trainer.state_dict` plus the last D_m R1 (the D_m scaler is in :meth:`grad_scalers`)."""
        state = super().state_dict()
        state["last_mask_r1"] = self.last_mask_r1
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.last_mask_r1 = float(state_dict.pop("last_mask_r1", 0.0))
        super().load_state_dict(state_dict)

    def grad_scalers(self) -> dict[str, torch.amp.GradScaler]:
        return {**super().grad_scalers(), "mask_scaler": self.mask_scaler}

    def _networks(self) -> list[torch.nn.Module]:
        # D_m is broadcast and its buffers averaged under torchrun like G and D_r
        return [*super()._networks(), self.mask_network]

    # ------------------------------------------------------------------ helpers
    def _generate_semantic(self, num: int, detach_mask_input: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(images, soft mask encoding, ws)`` of ``num`` fresh latents (style mixing, random noise)."""
        # as StyleGAN2Trainer._generate: the mapping sees the global batch, each rank synthesises its rows
        ws = self.g_network.map(
            self.draw_latents(num, whole=True), style_mixing_prob=self.style_mixing_prob,
            generator=self.latent_generator,
        )  # fmt: skip
        ws = self.rank_rows(ws)
        image, logits = self.g_network.synthesize(ws, noise_mode="random", detach_mask_input=detach_mask_input)
        return image, encode_mask_logits(logits), ws

    def _reals(self, batchdata: dict[str, Any]) -> torch.Tensor:
        if not isinstance(batchdata, dict) or self.image_key not in batchdata:
            raise ValueError(f"Each batch must be a dict holding the real images under {self.image_key!r}.")
        reals = torch.as_tensor(batchdata[self.image_key]).to(self.state.device, non_blocking=self.non_blocking)
        return reals.as_subclass(torch.Tensor).float()

    def labelled_batch(self, iteration: int, size: int) -> torch.Tensor:
        """``(size, C + M, S, S)`` labelled pairs of an iteration: indices fixed by ``(seed, iteration)``."""
        n = len(self.labelled_data)
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + int(iteration))
        index = torch.randperm(n, generator=rng)[:size] if size <= n else torch.randint(n, (size,), generator=rng)
        pairs = [torch.as_tensor(self.labelled_data[int(i)][self.pair_key]) for i in index]
        return torch.stack(pairs).as_subclass(torch.Tensor).float().to(self.state.device)

    # ------------------------------------------------------------------ iteration
    def _iteration(self, engine: SemanticGANTrainer, batchdata: dict[str, Any]) -> dict[str, float]:
        reals = engine._reals(batchdata)
        b = reals.shape[0]
        it = engine.state.iteration
        pairs = engine.labelled_batch(it, engine.labelled_batch_size or b)
        bm = pairs.shape[0]
        autocast = torch.autocast(device_type=engine.state.device.type, enabled=engine.amp)
        g, d, dm = engine.g_network, engine.d_network, engine.mask_network
        g.train()
        d.train()
        dm.train()

        # G main: D_r on images, D_m on (detached image, mask)
        g.requires_grad_(True)
        d.requires_grad_(False)
        dm.requires_grad_(False)
        with autocast:
            images, masks, _ = engine._generate_semantic(b, engine.detach_mask_input)
            g_image_loss = g_nonsaturating_loss(engine._judge(d, engine.augment, images).float())
            fake_pairs = torch.cat([images[:bm].detach(), masks[:bm]], dim=1)
            g_mask_loss = g_nonsaturating_loss(engine._judge(dm, engine.mask_augment, fake_pairs).float())
            g_loss = g_image_loss + engine.mask_weight * g_mask_loss
        engine.check_finite("Generator loss", g_loss)
        engine._step(g_loss, engine.g_optimizer, engine.g_scaler, g)

        # G reg: path length of the image output (float32)
        if engine.pl_penalty.weight > 0 and it % engine.pl_interval == 0:
            shrunk = max(1, b // engine.pl_batch_shrink)
            ws = g.map(engine.draw_latents(shrunk), style_mixing_prob=engine.style_mixing_prob,
                       generator=engine.latent_generator)  # fmt: skip
            image, _ = g.synthesize(ws, noise_mode="random")
            engine._path_length_step(image, ws)

        # D_r and D_m main
        g.requires_grad_(False)
        d.requires_grad_(True)
        dm.requires_grad_(True)
        with torch.no_grad(), autocast:
            images, masks, _ = engine._generate_semantic(max(b, bm), False)
        with autocast:
            fake_logits = engine._judge(d, engine.augment, images[:b]).float()
            real_logits = engine._judge(d, engine.augment, reals).float()
            d_loss = d_logistic_loss(real_logits, fake_logits)
        engine.check_finite("Image discriminator (D_r) loss", d_loss)
        engine._step(d_loss, engine.d_optimizer, engine.d_scaler, d)
        with autocast:
            fake_pairs = torch.cat([images[:bm], masks[:bm]], dim=1)
            mask_fake_logits = engine._judge(dm, engine.mask_augment, fake_pairs).float()
            mask_real_logits = engine._judge(dm, engine.mask_augment, pairs).float()
            mask_d_loss = d_logistic_loss(mask_real_logits, mask_fake_logits)
        engine.check_finite("Mask discriminator (D_m) loss", mask_d_loss)
        engine._step(mask_d_loss, engine.mask_optimizer, engine.mask_scaler, dm)

        # lazy R1 on both (float32)
        if it % engine.r1_interval == 0:
            for name, gamma, net, aug, opt, x in (
                ("R1 penalty (D_r)", engine.r1_gamma, d, engine.augment, engine.d_optimizer, reals),
                ("R1 penalty (D_m)", engine.mask_r1_gamma, dm, engine.mask_augment, engine.mask_optimizer, pairs),
            ):
                if gamma <= 0:
                    continue
                x = x.detach().requires_grad_(True)
                value = engine._lazy_r1(name, gamma, net, aug, opt, x, x)
                if net is d:
                    engine.last_r1 = value
                else:
                    engine.last_mask_r1 = value
        g.requires_grad_(True)

        def prob(x: torch.Tensor) -> float:
            return torch.sigmoid(x.detach()).mean().item()

        def ada_p(aug: torch.nn.Module | None) -> float:
            return float(aug.p) if aug is not None and hasattr(aug, "p") else 0.0

        return engine.synchronize(
            {
                "g_loss": g_image_loss.item(),
                "g_mask_loss": g_mask_loss.item(),
                "d_loss": d_loss.item(),
                "mask_d_loss": mask_d_loss.item(),
                "r1": engine.last_r1,
                "mask_r1": engine.last_mask_r1,
                "pl": engine.last_pl,
                "d_real": prob(real_logits),
                "d_fake": prob(fake_logits),
                "mask_d_real": prob(mask_real_logits),
                "mask_d_fake": prob(mask_fake_logits),
                "real_sign": torch.sign(real_logits.detach()).mean().item(),
                "mask_real_sign": torch.sign(mask_real_logits.detach()).mean().item(),
                "ada_p": ada_p(engine.augment),
                "mask_ada_p": ada_p(engine.mask_augment),
            }
        )
