"""GAN inversion: project real images into a StyleGAN2 generator's W+ space (and, optionally, its noise).

:class:`GANProjector` follows the StyleGAN2 projector (Karras et al. 2020, ``projector.py`` of
stylegan2-ada-pytorch) with three changes for medical images and offline machines:

- the latent is **w+** (one w per synthesis layer, as SemanticGAN's inference), initialised from the mean
  w of ``w_avg_samples`` mapped latents or from a :class:`LatentEncoder`;
- the reconstruction loss is a pixel MSE plus a perceptual distance on the **discriminator's own
  features** (LPIPS-style: unit-normalised channels, squared differences, averaged over pixels, summed
  over blocks) -- trained on this very domain and available offline, where LPIPS' VGG weights would have
  to be downloaded and know nothing about chest X-rays;
- images are optimised in batches, each with its own latents; the loss is a sum of per-image losses and
  Adam is element-wise, so images do not influence each other (only the random exploration draws
  depend on the batch).

Kept from the reference: Adam (0.9, 0.999), learning rate ``0.1`` with a 5 % linear ramp-up and a 25 %
cosine ramp-down, Gaussian exploration noise on w decaying over the first 75 % of the steps (scaled by the
spread of w), and -- when noise is optimised -- the multi-scale noise autocorrelation penalty (weight
1e5) with the noise maps renormalised after every step.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from monai.metrics import PSNRMetric, SSIMMetric
from monai.networks.nets import Regressor
from torch import nn

from monai_synth.handlers.checkpoint import load_checkpoint
from monai_synth.networks.nets.stylegan2 import StyleGAN2Discriminator

__all__ = [
    "GANProjector",
    "LatentEncoder",
    "ProjectionResult",
    "discriminator_features",
    "load_discriminator",
    "noise_regularization",
    "train_latent_encoder",
]

logger = logging.getLogger(__name__)


def load_discriminator(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> StyleGAN2Discriminator:
    """The discriminator of a ``datasetgan`` training checkpoint (``checkpoints/checkpoint_last.pt``), frozen.

    Raises:
        ValueError: the file holds no StyleGAN2 discriminator.
    """
    checkpoint = load_checkpoint(checkpoint_path, map_location="cpu")
    config = checkpoint.get("config", {}).get("discriminator")
    state = checkpoint.get("states", {}).get("discriminator")
    if config is None or state is None:
        raise ValueError(
            f"{checkpoint_path} holds no StyleGAN2 discriminator (a datasetgan train.json checkpoint does)."
        )
    network = StyleGAN2Discriminator(**config)
    network.load_state_dict(state)
    network.eval().requires_grad_(False)
    return network.to(device)


def discriminator_features(discriminator: StyleGAN2Discriminator, x: torch.Tensor) -> list[torch.Tensor]:
    """Activations after the input layer and after each residual block (before minibatch stddev)."""
    x = discriminator.from_image(x)
    features = [x]
    for block in discriminator.blocks:
        x = block(x)
        features.append(x)
    return features


def _perceptual(features_a: list[torch.Tensor], features_b: list[torch.Tensor]) -> torch.Tensor:
    """Per-image LPIPS-style distance ``(B,)`` between two feature lists (no learned channel weights)."""
    total = 0.0
    for a, b in zip(features_a, features_b):
        a = a / (a.square().sum(dim=1, keepdim=True).sqrt() + 1e-8)
        b = b / (b.square().sum(dim=1, keepdim=True).sqrt() + 1e-8)
        total = total + (a - b).square().sum(dim=1).mean(dim=(1, 2))
    return total


def noise_regularization(noise: list[torch.Tensor]) -> torch.Tensor:
    """Per-image StyleGAN2 noise penalty ``(B,)``: squared autocorrelation at shift 1, over scales down to 8 px."""
    total = 0.0
    for n in noise:
        while True:
            total = total + (n * torch.roll(n, 1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (n * torch.roll(n, 1, dims=2)).mean(dim=(1, 2, 3)).square()
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


class LatentEncoder(nn.Module):
    """Image -> w (the mean-w-relative latent, broadcast to every layer): a MONAI ``Regressor``.

    Trained by :func:`train_latent_encoder` on generated (image, w) pairs, which cost nothing, to start a
    projection near its answer.
    """

    def __init__(self, image_channels: int, image_size: int, w_dim: int, base_channels: int = 32) -> None:
        super().__init__()
        depth = max(1, int(math.log2(image_size)) - 2)  # stride-2 stages down to 4 x 4
        channels = [min(base_channels * 2**i, 256) for i in range(depth)]
        self.config = {"image_channels": image_channels, "image_size": image_size, "w_dim": w_dim,
                       "base_channels": base_channels}  # fmt: skip
        self.net = Regressor((image_channels, image_size, image_size), (w_dim,), channels, [2] * depth)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def _image_part(generator: nn.Module, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(image channels, mask channels or None) of a generator output."""
    config = generator.get_config()
    c = int(config["image_channels"])
    if config["mode"] == "paired":
        return output[:, :c], output[:, c:]
    return output, None


def train_latent_encoder(
    generator: nn.Module,
    steps: int = 500,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> LatentEncoder:
    """Train a :class:`LatentEncoder` on freshly generated images (constant noise) to predict their w."""
    config = generator.get_config()
    device = generator.const.device
    encoder = LatentEncoder(int(config["image_channels"]), int(config["image_size"]), generator.w_dim).to(device)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=learning_rate)
    rng = torch.Generator().manual_seed(seed)
    encoder.train()
    for step in range(steps):
        with torch.no_grad():
            w = generator.mapping(
                torch.randn(batch_size, generator.z_dim, generator=rng).to(device), update_w_avg=False
            )
            images, _ = _image_part(generator, generator.synthesis(w, noise_mode="const"))
        loss = F.mse_loss(encoder(images), w)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            logger.info("latent encoder step %d: loss %.4f", step, loss.item())
    return encoder.eval()


@dataclass
class ProjectionResult:
    """What :class:`GANProjector` returns for ``B`` images."""

    ws: torch.Tensor  # (B, num_ws, w_dim)
    noise: list[torch.Tensor] | None  # per layer (B, 1, r, r), or None (constant noise)
    image: torch.Tensor  # (B, C, S, S) reconstruction, clamped to [-1, 1]
    psnr: torch.Tensor  # (B,) dB over the [-1, 1] range
    ssim: torch.Tensor  # (B,)
    loss_history: list[float] = field(default_factory=list)  # mean per-image loss per step
    seconds: float = 0.0


class GANProjector:
    """Find, for each image, the w+ (and optionally noise) whose generated image reconstructs it.

    Args:
        generator: a :class:`~monai_synth.networks.nets.StyleGAN2Generator` in image or paired mode (frozen).
        discriminator: its discriminator for the perceptual term (``None``: pixel loss only).
        num_steps: optimisation steps (the reference uses 1000).
        learning_rate: initial learning rate (0.1).
        lr_rampup, lr_rampdown: fractions of the steps for the linear ramp-up and cosine ramp-down.
        initial_noise_factor, noise_ramp: exploration noise on w: ``w_std * factor * max(0, 1 - t / ramp)**2``.
        optimize_noise: also optimise the per-layer noise maps (else the generator's constant noise).
        noise_weight: weight of :func:`noise_regularization` (1e5).
        pixel_weight, perceptual_weight: weights of the pixel MSE and the discriminator-feature distance.
        encoder: a :class:`LatentEncoder` to initialise w (else the mean w).
        w_avg_samples: latents mapped to estimate the mean and spread of w.
        seed: seed of the exploration noise and the noise initialisation.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: StyleGAN2Discriminator | None = None,
        num_steps: int = 300,
        learning_rate: float = 0.1,
        lr_rampup: float = 0.05,
        lr_rampdown: float = 0.25,
        initial_noise_factor: float = 0.05,
        noise_ramp: float = 0.75,
        optimize_noise: bool = False,
        noise_weight: float = 1e5,
        pixel_weight: float = 1.0,
        perceptual_weight: float = 1.0,
        encoder: LatentEncoder | None = None,
        w_avg_samples: int = 10000,
        seed: int = 0,
    ) -> None:
        config = generator.get_config()
        if config.get("mode") not in ("image", "paired"):
            raise ValueError(
                f"Projection needs a generator that draws images; this one is in {config.get('mode')!r} mode."
            )
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}.")
        self.generator = generator.eval().requires_grad_(False)
        self.discriminator = discriminator
        if discriminator is not None:
            d_config = discriminator.get_config()
            if d_config["image_size"] != config["image_size"] or d_config["mode"] != config["mode"]:
                raise ValueError(
                    f"The discriminator ({d_config['mode']}, {d_config['image_size']} px) does not belong to this "
                    f"generator ({config['mode']}, {config['image_size']} px)."
                )
        self.image_channels = int(config["image_channels"])
        self.image_size = int(config["image_size"])
        self.num_steps = int(num_steps)
        self.learning_rate = float(learning_rate)
        self.lr_rampup, self.lr_rampdown = float(lr_rampup), float(lr_rampdown)
        self.initial_noise_factor, self.noise_ramp = float(initial_noise_factor), float(noise_ramp)
        self.optimize_noise = bool(optimize_noise)
        self.noise_weight = float(noise_weight)
        self.pixel_weight, self.perceptual_weight = float(pixel_weight), float(perceptual_weight)
        self.encoder = encoder
        self.seed = int(seed)
        device = generator.const.device
        with torch.no_grad():
            z = torch.randn(w_avg_samples, generator.z_dim, generator=torch.Generator().manual_seed(123456))
            w = torch.cat([generator.mapping(part.to(device), update_w_avg=False) for part in z.split(2048)])
        self.w_avg = w.mean(dim=0)
        self.w_std = float(((w - self.w_avg).square().sum() / w_avg_samples).sqrt())

    def check_images(self, images: torch.Tensor) -> None:
        """Refuse images the generator cannot represent (shape and channel count), naming the expectation."""
        c, s = self.image_channels, self.image_size
        if images.ndim != 4 or images.shape[1] != c or images.shape[-2:] != (s, s):
            raise ValueError(
                f"The generator draws {c}-channel {s} x {s} images; cannot project images of shape "
                f"{tuple(images.shape)} (expected (B, {c}, {s}, {s})). Preprocess them to the generator's size "
                "and channels (the dataset options of train.json)."
            )
        if not torch.isfinite(images).all():
            raise ValueError("Images to project contain NaN or infinite values.")

    def _learning_rate(self, t: float) -> float:
        ramp = min(1.0, (1.0 - t) / self.lr_rampdown)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
        return self.learning_rate * ramp * min(1.0, t / self.lr_rampup)

    def _loss(self, synth: torch.Tensor, target: torch.Tensor, target_features) -> torch.Tensor:
        image, mask = _image_part(self.generator, synth)
        loss = self.pixel_weight * (image - target).square().mean(dim=(1, 2, 3))
        if self.discriminator is not None and self.perceptual_weight > 0:
            d_input = image if mask is None else torch.cat([image, mask.detach()], dim=1)
            features = discriminator_features(self.discriminator, d_input)
            if target_features is None:
                t_input = target if mask is None else torch.cat([target, mask.detach()], dim=1)
                with torch.no_grad():
                    target_features = discriminator_features(self.discriminator, t_input)
            loss = loss + self.perceptual_weight * _perceptual(features, target_features)
        return loss

    def __call__(self, images: torch.Tensor) -> ProjectionResult:
        """Project ``images (B, C, S, S)`` in [-1, 1]; returns their w+, noise, reconstructions and scores."""
        self.check_images(images)
        started = time.perf_counter()
        g = self.generator
        device = g.const.device
        target = images.to(device=device, dtype=torch.float32)
        b = target.shape[0]
        rng = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            start_w = self.w_avg[None].expand(b, -1) if self.encoder is None else self.encoder(target)
        ws = start_w[:, None].repeat(1, g.num_ws, 1).detach().clone().requires_grad_(True)
        params = [ws]
        noise = None
        if self.optimize_noise:
            noise = [torch.randn(b, 1, *shape, generator=rng).to(device) for shape in g.noise_shapes()]
            for n in noise:
                n.requires_grad_(True)
            params += noise
        optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=self.learning_rate)
        # with a paired generator the perceptual target depends on the current mask: recomputed every step
        fixed_target = None
        if self.discriminator is not None and g.get_config()["mode"] == "image":
            with torch.no_grad():
                fixed_target = discriminator_features(self.discriminator, target)
        history = []
        for step in range(self.num_steps):
            t = step / self.num_steps
            for group in optimizer.param_groups:
                group["lr"] = self._learning_rate(t)
            scale = self.w_std * self.initial_noise_factor * max(0.0, 1.0 - t / self.noise_ramp) ** 2
            explore = torch.randn(ws.shape, generator=rng).to(device) * scale
            synth = g.synthesis(ws + explore, noise_mode="const", noise=noise)
            loss = self._loss(synth, target, fixed_target)
            if noise is not None:
                loss = loss + self.noise_weight * noise_regularization(noise)
            total = loss.sum()
            if not torch.isfinite(total):
                raise FloatingPointError(f"projection loss is {total.item()} at step {step + 1}.")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if noise is not None:
                with torch.no_grad():
                    for n in noise:
                        n.sub_(n.mean(dim=(1, 2, 3), keepdim=True)).div_(n.std(dim=(1, 2, 3), keepdim=True) + 1e-8)
            history.append(total.item() / b)
            if (step + 1) % 100 == 0 or step + 1 == self.num_steps:
                logger.info(
                    "projection of %d image(s): step %d/%d, loss %.4f", b, step + 1, self.num_steps, history[-1]
                )
        with torch.no_grad():
            final = [n.detach() for n in noise] if noise is not None else None
            image, _ = _image_part(g, g.synthesis(ws.detach(), noise_mode="const", noise=final))
            image = image.clamp(-1, 1)
            psnr = PSNRMetric(max_val=2.0, reduction="none")(image, target.clamp(-1, 1)).reshape(-1)
            ssim = SSIMMetric(spatial_dims=2, data_range=2.0, reduction="none")(image, target.clamp(-1, 1)).reshape(-1)
        return ProjectionResult(
            ws=ws.detach(),
            noise=final,
            image=image,
            psnr=psnr.cpu(),
            ssim=ssim.cpu(),
            loss_history=history,
            seconds=time.perf_counter() - started,
        )

    def settings(self) -> dict[str, Any]:
        """JSON-ready settings (stored beside projected latents)."""
        return {
            "num_steps": self.num_steps,
            "learning_rate": self.learning_rate,
            "lr_rampup": self.lr_rampup,
            "lr_rampdown": self.lr_rampdown,
            "initial_noise_factor": self.initial_noise_factor,
            "noise_ramp": self.noise_ramp,
            "optimize_noise": self.optimize_noise,
            "noise_weight": self.noise_weight,
            "pixel_weight": self.pixel_weight,
            "perceptual_weight": self.perceptual_weight if self.discriminator is not None else 0.0,
            "encoder": self.encoder is not None,
            "seed": self.seed,
        }
