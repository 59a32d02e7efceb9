"""GAN inversion: recovery of generated images, perceptual and noise terms, encoder, bad inputs, and the
interpreter trained from projected real annotations."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_synth.apps.datasetgan import (
    GANProjector,
    noise_regularization,
    train_interpreter_from_projection,
    train_latent_encoder,
)
from monai_synth.networks.nets import StyleGAN2Discriminator, StyleGAN2Generator
from monai_synth.utils.export import load_interpreter
from monai_synth.utils.io import torch_save_atomic


def _generator(mode: str = "image", size: int = 16) -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(size, 1, 1 if mode != "image" else 0, mode, z_dim=16, w_dim=16, mapping_layers=2,
                              channel_base=128, channel_max=16).eval()  # fmt: skip


def _targets(g: StyleGAN2Generator, n: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ws = g.map(torch.randn(n, g.z_dim, generator=rng))
        ws = ws + 0.1 * torch.randn(ws.shape, generator=rng)  # a true w+, not on the mapped manifold
        return ws, g.synthesis(ws, noise_mode="const")


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(4 / (a - b).square().mean(dim=(1, 2, 3)))


def test_projection_recovers_an_image_generated_from_a_known_w_plus() -> None:
    g = _generator()
    _, target = _targets(g)
    projector = GANProjector(g, num_steps=250)
    with torch.no_grad():
        start = g.synthesis(projector.w_avg[None].expand(4, -1), noise_mode="const")
    result = projector(target)
    assert result.ws.shape == (4, g.num_ws, 16) and result.noise is None and result.image.shape == target.shape
    assert (result.psnr > 25).all() and (result.psnr > _psnr(start, target) + 5).all()
    assert (result.ssim > 0.85).all()
    torch.testing.assert_close(result.psnr, _psnr(result.image, target.clamp(-1, 1)), rtol=1e-3, atol=1e-3)
    with torch.no_grad():  # the stored latents regenerate the reconstruction
        again = g.synthesis(result.ws, noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(again, result.image)
    assert result.loss_history[-1] < 0.2 * result.loss_history[0]


def test_perceptual_term_and_optimised_noise() -> None:
    g = _generator("paired")
    torch.manual_seed(3)
    d = StyleGAN2Discriminator(16, 1, 1, "paired", 128, 16).eval()
    _, pairs = _targets(g, n=3)
    result = GANProjector(g, d, num_steps=60, optimize_noise=True)(pairs[:, :1])  # the image channel only
    assert [tuple(n.shape) for n in result.noise] == [(3, 1, *s) for s in g.noise_shapes()]
    for n in result.noise:  # renormalised after every step
        torch.testing.assert_close(n.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    assert result.image.shape == (3, 1, 16, 16) and torch.isfinite(result.psnr).all()
    with torch.no_grad():
        again = g.synthesis(result.ws, noise=result.noise)[:, :1].clamp(-1, 1)
    torch.testing.assert_close(again, result.image)


def test_noise_regularization_values() -> None:
    ones = [torch.ones(2, 1, 16, 16)]
    # 16 px and 8 px scales, two shifts each, autocorrelation 1 -> 4 per image
    torch.testing.assert_close(noise_regularization(ones), torch.full((2,), 4.0))
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2.0 - 1
    assert noise_regularization([checker.reshape(1, 1, 16, 16)]).item() == pytest.approx(2.0)  # -1 at 16 px
    white = [torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))]
    assert noise_regularization(white).item() < 1e-3


def test_encoder_predicts_w_better_than_the_mean() -> None:
    g = _generator()
    encoder = train_latent_encoder(g, steps=150, batch_size=32, learning_rate=2e-3)
    with torch.no_grad():
        w = g.mapping(torch.randn(64, g.z_dim, generator=torch.Generator().manual_seed(9)), update_w_avg=False)
        images = g.synthesis(w, noise_mode="const")
        error = (encoder(images) - w).square().mean()
        baseline = (w.mean(0, keepdim=True) - w).square().mean()
    assert error < 0.7 * baseline


def test_images_the_generator_cannot_represent_are_refused() -> None:
    g = _generator()
    projector = GANProjector(g, num_steps=1, w_avg_samples=100)
    with pytest.raises(ValueError, match=r"1-channel 16 x 16 images.*\(2, 3, 16, 16\)"):
        projector(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="1-channel 16 x 16"):
        projector(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="NaN"):
        projector(torch.full((1, 1, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="'mask' mode"):
        GANProjector(_generator("mask"))
    with pytest.raises(ValueError, match="does not belong"):
        GANProjector(g, StyleGAN2Discriminator(32, 1, 0, "image", 128, 16))


def _write_real_dataset(g: StyleGAN2Generator, folder: Path, n: int) -> None:
    """Constructed "real" data: images the generator can draw, labelled by a fixed rule (bright pixels)."""
    _, images = _targets(g, n=n, seed=5)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i, image in enumerate(images[:, 0].numpy()):
        nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), str(folder / "images" / f"case_{i:02d}.nii.gz"))
        mask = (image > np.median(image)).astype(np.uint8)
        nib.save(nib.Nifti1Image(mask, np.eye(4)), str(folder / "labels" / f"case_{i:02d}.nii.gz"))


def test_interpreter_from_projected_real_annotations_beats_chance(tmp_path: Path) -> None:
    g = _generator()
    config = {
        "generator_class": "monai_synth.networks.nets.StyleGAN2Generator",
        "generator": g.get_config(),
        "latent": {"dim": 16, "distribution": "normal"},
        "data": {"image_size": 16, "image_channels": 1, "num_classes": 2,
                 "intensity": {"mode": "fixed", "input_range": (-1.0, 1.0)}},
    }  # fmt: skip
    torch_save_atomic({"state_dict": g.state_dict(), "config": config}, tmp_path / "generator.pt")
    _write_real_dataset(g, tmp_path / "real", 14)
    summary = train_interpreter_from_projection(
        tmp_path / "generator.pt", tmp_path / "real", tmp_path / "interpreter.pt", tmp_path / "projection",
        checkpoint_path=None, num_annotations=8, num_held_out=6, projection_steps=150, projection_batch_size=5,
        num_members=3, hidden_channels=(32, 16), epochs=40, images_per_step=4, pixels_per_image=128,
        learning_rate=3e-3, perceptual_weight=0.0,
    )  # fmt: skip
    assert summary["num_train"] == 8 and summary["num_held_out"] == 6 and summary["psnr_mean"] > 20
    assert summary["held_out_dice"] > 0.75  # chance (half the pixels at random) is about 0.5
    saved = torch.load(tmp_path / "projection" / "latents.pt", weights_only=True)
    assert saved["ws"].shape == (14, g.num_ws, 16) and saved["masks"].shape == (14, 1, 16, 16)
    assert saved["train"] == list(range(8)) and saved["held_out"] == list(range(8, 14))
    manifest = json.loads((tmp_path / "projection" / "manifest.json").read_text())
    assert len(manifest["images"]) == 14 and manifest["projection"]["num_steps"] == 150
    ensemble, checkpoint = load_interpreter(tmp_path / "interpreter.pt", tmp_path / "generator.pt")
    assert checkpoint["annotation_source"] == "projection" and len(checkpoint["held_out_ids"]) == 6
    with pytest.raises(ValueError, match="num_annotations=20"):
        train_interpreter_from_projection(
            tmp_path / "generator.pt", tmp_path / "real", tmp_path / "i.pt", tmp_path / "p", num_annotations=20,
        )  # fmt: skip
