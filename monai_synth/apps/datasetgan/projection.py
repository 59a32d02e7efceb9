"""GAN inversion: project real images into a StyleGAN2 generator's W+ space, and what DatasetGAN does with it.

:func:`train_interpreter_from_projection` trains the style interpreter from existing *real* annotations
(project the labelled images, train on the features of their projections, score on other projected
real images); :func:`segment_real_images` segments real images by project-then-classify (``segment.json``).

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
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import PSNRMetric, SSIMMetric
from torch import nn

from monai_synth.data import orientation as orient
from monai_synth.data.pipeline import PairedSliceDataset
from monai_synth.inferers import StyleInterpreterInferer
from monai_synth.metrics.segmentation import score_cases, score_labels, summarise_cases
from monai_synth.networks.latents import sample_latents
from monai_synth.networks.nets import LatentEncoder, PixelClassifierEnsemble, StyleGAN2Discriminator
from monai_synth.utils.export import file_sha256, load_discriminator, load_generator, load_interpreter, save_interpreter
from monai_synth.utils.io import save_png_atomic, torch_save_atomic, write_json_atomic
from monai_synth.utils.visualize import to_uint8

from .interpreter_training import train_style_interpreter

__all__ = [
    "GANProjector",
    "ProjectionResult",
    "discriminator_features",
    "noise_regularization",
    "project_images",
    "segment_real_images",
    "train_interpreter_from_projection",
    "train_latent_encoder",
]

logger = logging.getLogger(__name__)


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
                sample_latents(batch_size, generator.z_dim, generator=rng, device=device, distribution="normal"),
                update_w_avg=False,
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
        encoder: a :class:`LatentEncoder` to initialise w (one w or w+; else the mean w).
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
            # a paired generator may also use an image-mode discriminator on its image channels (SemanticGAN's D_r)
            image_only = d_config["mode"] == "image" and d_config["image_channels"] == config["image_channels"]
            if d_config["image_size"] != config["image_size"] or (
                d_config["mode"] != config["mode"] and not image_only
            ):
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
            image_only = mask is None or self.discriminator.get_config()["mode"] == "image"
            d_input = image if image_only else torch.cat([image, mask.detach()], dim=1)
            features = discriminator_features(self.discriminator, d_input)
            if target_features is None and image_only:
                with torch.no_grad():
                    target_features = discriminator_features(self.discriminator, target)
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
        if start_w.ndim == 2:  # one w per image: broadcast to w+
            start_w = start_w[:, None].repeat(1, g.num_ws, 1)
        ws = start_w.detach().clone().requires_grad_(True)
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
        if self.discriminator is not None and self.discriminator.get_config()["mode"] == "image":
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


def project_images(projector: GANProjector, images: torch.Tensor, batch_size: int = 16) -> ProjectionResult:
    """Project ``images (N, C, S, S)`` in batches; one :class:`ProjectionResult` for all of them."""
    parts = [projector(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    noise = None
    if parts[0].noise is not None:
        noise = [torch.cat([p.noise[k] for p in parts]) for k in range(len(parts[0].noise))]
    return ProjectionResult(
        ws=torch.cat([p.ws for p in parts]),
        noise=noise,
        image=torch.cat([p.image for p in parts]),
        psnr=torch.cat([p.psnr for p in parts]),
        ssim=torch.cat([p.ssim for p in parts]),
        loss_history=parts[0].loss_history,
        seconds=sum(p.seconds for p in parts),
    )


def _subset(result: ProjectionResult, index: list[int]) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    noise = [n[index] for n in result.noise] if result.noise is not None else None
    return result.ws[index], noise


def _real_dataset(
    generator_path: str | Path, config: dict[str, Any], dataset_dir: str | Path | None, **kwargs: Any
) -> PairedSliceDataset:
    """Real data preprocessed as the generator's training data (its intensity rule and size), channels checked."""
    dataset = PairedSliceDataset(
        dataset_dir,
        image_size=int(config["generator"]["image_size"]),
        intensity=config.get("data", {}).get("intensity", "auto"),
        **kwargs,
    )
    if dataset.image_channels != int(config["generator"]["image_channels"]):
        raise ValueError(
            f"{dataset_dir} has {dataset.image_channels}-channel images but {generator_path} draws "
            f"{config['generator']['image_channels']}-channel images; project data of the kind the GAN was trained on."
        )
    return dataset


def _stack(items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, C, S, S) float32, masks (N, 1, S, S) int64)`` of dataset items."""
    images = torch.stack([torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32) for item in items])
    masks = torch.stack([torch.as_tensor(np.asarray(item["label"])).long() for item in items])
    return images, masks


def _perceptual_discriminator(
    checkpoint_path: str | Path | None, perceptual_weight: float, device: torch.device
) -> StyleGAN2Discriminator | None:
    """The training checkpoint's discriminator for the perceptual term, or ``None`` (pixel loss only)."""
    if perceptual_weight <= 0:
        return None
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        return load_discriminator(checkpoint_path, device)
    logger.warning("No discriminator checkpoint at %s: projecting with the pixel loss only.", checkpoint_path)
    return None


def train_interpreter_from_projection(
    generator_path: str | Path,
    dataset_dir: str | Path | None,
    output_path: str | Path,
    projection_dir: str | Path,
    checkpoint_path: str | Path | None = None,
    num_annotations: int = 30,
    num_held_out: int = 30,
    projection_steps: int = 300,
    projection_batch_size: int = 16,
    optimize_noise: bool = False,
    perceptual_weight: float = 1.0,
    use_encoder: bool = False,
    encoder_steps: int = 500,
    num_members: int = 10,
    hidden_channels: tuple[int, int] = (256, 128),
    epochs: int = 100,
    images_per_step: int = 2,
    pixels_per_image: int = 2048,
    learning_rate: float = 1e-4,
    class_balance: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    data_options: dict[str, Any] | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Project labelled real images, train the interpreter on them, score it on other projected real images.

    Args:
        generator_path: the exported generator (image or paired mode).
        dataset_dir: labelled real data (folder or datalist; ``None``: the built-in phantom), preprocessed
            as the generator's training data (its intensity rule, its size).
        output_path: where ``interpreter.pt`` goes.
        projection_dir: where the projected latents, their manifest and previews go.
        checkpoint_path: the training checkpoint holding the discriminator (perceptual loss); when
            missing, the projection uses the pixel loss only (with a warning).
        num_annotations: labelled real images the interpreter trains on (``K``).
        num_held_out: other labelled real images it is scored on (0: no score).
        projection_steps, projection_batch_size, optimize_noise, perceptual_weight: see
            :class:`GANProjector`.
        use_encoder: initialise projections with a :class:`~monai_synth.networks.nets.LatentEncoder` trained for
            ``encoder_steps`` batches on generated images.
        data_options: extra :class:`~monai_synth.data.PairedSliceDataset` arguments (``slice_axis``,
            ``keep_labels``, ``mask_threshold``, ``mask_mapping``, ``max_items``, ``cache_dir``).
        num_classes: classes ``K`` (background included); inferred from the masks when ``None``.

    Returns:
        the summary written beside the interpreter: held-out Dice / mIoU of project-then-classify on real
        images, the same on the training images, reconstruction PSNR / SSIM, timings, peak memory.

    Raises:
        ValueError: too few labelled images, or images the generator cannot represent (channels, size).
    """
    device = torch.device(device)
    generator, config = load_generator(generator_path, device, conditional=False)
    generator_sha256 = file_sha256(generator_path)
    dataset = _real_dataset(
        generator_path, config, dataset_dir, num_classes=num_classes, seed=seed, **dict(data_options or {})
    )
    n = len(dataset)
    if num_annotations < 1 or num_annotations + max(num_held_out, 0) > n:
        raise ValueError(
            f"{dataset_dir} holds {n} labelled images; num_annotations={num_annotations} plus "
            f"num_held_out={num_held_out} must be at least 1 and at most {n}."
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    chosen = order[: num_annotations + num_held_out]
    items = [dataset[i] for i in chosen]
    images, masks = _stack(items)
    case_ids = [str(item.get("case_id", i)) for item, i in zip(items, chosen)]
    k = dataset.num_classes

    discriminator = _perceptual_discriminator(checkpoint_path, perceptual_weight, device)
    started = time.perf_counter()
    encoder = train_latent_encoder(generator, steps=encoder_steps, seed=seed) if use_encoder else None
    encoder_seconds = time.perf_counter() - started
    projector = GANProjector(
        generator,
        discriminator,
        num_steps=projection_steps,
        optimize_noise=optimize_noise,
        perceptual_weight=perceptual_weight,
        encoder=encoder,
        seed=seed,
    )
    projected = project_images(projector, images, projection_batch_size)
    train_idx = list(range(num_annotations))
    held_idx = list(range(num_annotations, num_annotations + num_held_out))

    projection_dir = Path(projection_dir)
    torch_save_atomic(
        {
            "ws": projected.ws.cpu(),
            "noise": [x.cpu() for x in projected.noise] if projected.noise is not None else None,
            "masks": masks,
            "case_ids": case_ids,
            "train": train_idx,
            "held_out": held_idx,
        },
        projection_dir / "latents.pt",
    )
    for j in range(min(8, len(items))):  # target | reconstruction previews
        pair = torch.cat([images[j, 0], projected.image[j, 0].cpu()], dim=1)
        save_png_atomic(projection_dir / f"preview_{j:02d}.png", to_uint8(pair))

    torch.manual_seed(seed)
    ensemble = PixelClassifierEnsemble(generator.feature_channels, k, num_members, hidden_channels).to(device)
    train_ws, train_noise = _subset(projected, train_idx)
    started = time.perf_counter()
    history = train_style_interpreter(
        generator, ensemble, train_ws, masks[train_idx], "w", epochs, images_per_step, pixels_per_image,
        learning_rate, class_balance, seed, noise=train_noise,
    )  # fmt: skip
    training_seconds = time.perf_counter() - started
    inferer = StyleInterpreterInferer(generator, latent_kind="w")
    scores: dict[str, Any] = {}
    for name, index in (("train", train_idx), ("held_out", held_idx)):
        if not index:
            continue
        ws, noise = _subset(projected, index)
        out = inferer(ws.to(device), ensemble, noise=[x.to(device) for x in noise] if noise else None)
        result = score_labels(out["label"], masks[index], k)
        scores[f"{name}_dice"], scores[f"{name}_miou"] = result["dice"], result["miou"]
    label_names = {str(key): value for key, value in dataset.label_names.items()}
    save_interpreter(
        ensemble,
        output_path,
        generator_sha256,
        label_names,
        annotation_source="projection",
        train_ids=[case_ids[i] for i in train_idx],
        held_out_ids=[case_ids[i] for i in held_idx],
    )
    psnr, ssim = projected.psnr, projected.ssim
    manifest = {
        "generator_sha256": generator_sha256,
        "dataset": dataset.summary["source"],
        "projection": projector.settings(),
        "discriminator": str(checkpoint_path) if discriminator is not None else None,
        "images": [
            {
                "case_id": case_ids[i],
                "split": "train" if i < num_annotations else "held_out",
                "psnr": round(float(psnr[i]), 3),
                "ssim": round(float(ssim[i]), 4),
            }
            for i in range(len(items))
        ],  # fmt: skip
    }
    write_json_atomic(projection_dir / "manifest.json", manifest)
    return {
        "annotation_source": "projection",
        "num_train": num_annotations,
        "num_held_out": num_held_out,
        **scores,
        "psnr_mean": round(float(psnr.mean()), 3),
        "psnr_std": round(float(psnr.std()), 3) if len(psnr) > 1 else 0.0,
        "ssim_mean": round(float(ssim.mean()), 4),
        "projection_steps": projection_steps,
        "projection_seconds": round(projected.seconds, 2),
        "projection_images_per_s": round(len(items) / projected.seconds, 3),
        "encoder_seconds": round(encoder_seconds, 2) if use_encoder else None,
        "loss_history": history,
        "training_seconds": round(training_seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "interpreter_path": str(output_path),
        "label_names": label_names,
    }


def segment_real_images(
    generator_path: str | Path,
    interpreter_path: str | Path,
    dataset_dir: str | Path | None,
    output_dir: str | Path,
    checkpoint_path: str | Path | None = None,
    projection_steps: int = 300,
    projection_batch_size: int = 16,
    optimize_noise: bool = False,
    perceptual_weight: float = 1.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    data_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Segment real images with the GAN: project each into W+, then label the projection with the interpreter.

    Writes ``<index>_<case>_{label,uncertainty,reconstruction}.nii.gz`` and ``segmentation.json`` (per image
    PSNR / SSIM of the reconstruction, uncertainty score, and when the data are labelled Dice and HD95 in
    pixels; their means, mIoU and the count of images without a distance in the summary) to
    ``output_dir``; returns the summary. Images are preprocessed as the generator's training data.
    """
    device = torch.device(device)
    generator, config = load_generator(generator_path, device, conditional=False)
    ensemble, _ = load_interpreter(interpreter_path, generator_path, device)
    dataset = _real_dataset(
        generator_path,
        config,
        dataset_dir,
        num_classes=max(ensemble.num_classes, 2),
        seed=seed,
        require_labels=False,
        **dict(data_options or {}),
    )
    items = [dataset[i] for i in range(len(dataset))]
    images, truth = _stack(items)
    discriminator = _perceptual_discriminator(checkpoint_path, perceptual_weight, device)
    projector = GANProjector(generator, discriminator, num_steps=projection_steps, optimize_noise=optimize_noise,
                             perceptual_weight=perceptual_weight, seed=seed)  # fmt: skip
    projected = project_images(projector, images, projection_batch_size)
    inferer = StyleInterpreterInferer(generator, latent_kind="w")
    labels, uncertainty, scores = [], [], []
    for start in range(0, len(items), projection_batch_size):
        index = list(range(start, min(start + projection_batch_size, len(items))))
        ws, noise = _subset(projected, index)
        out = inferer(ws.to(device), ensemble, noise=[x.to(device) for x in noise] if noise else None)
        labels.append(out["label"].cpu())
        uncertainty.append(out["uncertainty"].cpu())
        scores += out["uncertainty_score"].cpu().tolist()
    labels, uncertainty = torch.cat(labels), torch.cat(uncertainty)
    out_dir = Path(output_dir)
    # outputs load like the segmented images themselves (MONAI LoadImage; their first case's geometry)
    orientation = dataset.summary["orientation"]
    records = []
    for i, item in enumerate(items):
        name = f"{i:04d}_{item.get('case_id', 'image')}"
        orient.save_label(out_dir / f"{name}_label.nii.gz", labels[i].numpy(), orientation)
        orient.save_map(out_dir / f"{name}_uncertainty.nii.gz", uncertainty[i].numpy(), orientation)
        orient.save_image(out_dir / f"{name}_reconstruction.nii.gz", projected.image[i].cpu().numpy(), orientation)
        records.append({"name": name, "case_id": str(item.get("case_id")), "psnr": round(float(projected.psnr[i]), 3),
                        "ssim": round(float(projected.ssim[i]), 4), "uncertainty_score": round(scores[i], 6)})  # fmt: skip
    labelled = dataset.summary.get("unlabelled_items", 0) == 0  # every image came with its mask: score the labels
    if labelled:
        for record, case in zip(records, score_cases(labels, truth, ensemble.num_classes)):
            record.update({k: round(v, 6) for k, v in case.items()})
    summary: dict[str, Any] = {
        "num_images": len(items),
        "psnr_mean": round(float(projected.psnr.mean()), 3),
        "ssim_mean": round(float(projected.ssim.mean()), 4),
        "projection_seconds": round(projected.seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if labelled:
        summary.update(score_labels(labels, truth, ensemble.num_classes))
        summary.update({k: v for k, v in summarise_cases(records).items() if k != "dice"})
    write_json_atomic(out_dir / "segmentation.json", {**summary, "images": records})
    logger.info(
        "segmented %d images into %s; reconstruction PSNR %.2f dB; Dice %s, HD95 %s",
        len(items),
        out_dir,
        summary["psnr_mean"],
        summary.get("dice"),
        summary.get("hd95"),
    )
    return summary
