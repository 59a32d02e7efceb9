"""Style interpreter: training from latents + masks (features streamed), the inferer's outputs."""

from __future__ import annotations

import pytest
import torch

from monai_synth.apps.datasetgan import train_style_interpreter
from monai_synth.inferers import StyleInterpreterInferer, image_uncertainty_score
from monai_synth.networks.nets import PixelClassifierEnsemble, StyleGAN2Generator
from monai_synth.networks.nets.pixel_classifier import majority_vote


def _generator():
    torch.manual_seed(0)
    return StyleGAN2Generator(16, z_dim=8, w_dim=8, mapping_layers=1, channel_base=128, channel_max=16).eval()


def _masks(generator, z):
    """Constructed annotations: a fixed per-pixel function of the finest feature maps, thresholded at the
    median (an untrained generator's *image* is not such a function: its output layer is style-modulated
    per image; a trained generator's semantics are what the interpreter reads)."""
    with torch.no_grad():
        signal = generator(z, return_features=True).features[-1][:, :4].mean(dim=1)
    return (signal > signal.median()).long()


def _dice(a, b):
    return (2 * (a & b).sum() / (a.sum() + b.sum())).item()


def test_interpreter_learns_held_out_masks_far_above_chance():
    g = _generator()
    z = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    masks = _masks(g, z)
    torch.manual_seed(2)
    ens = PixelClassifierEnsemble(g.feature_channels, num_classes=2, num_members=3, hidden_channels=(32, 16))
    history = train_style_interpreter(
        g, ens, z[:12], masks[:12], epochs=40, images_per_step=4, pixels_per_image=256, learning_rate=3e-3
    )  # 12 annotated images; the last 8 are held out
    assert history[-1] < 0.5 * history[0]
    out = StyleInterpreterInferer(g, rows_per_chunk=5)(z[32:], ens)
    predicted, truth = out["label"][:, 0].bool(), masks[32:].bool()
    assert _dice(predicted, truth) > 0.75  # chance (a random half of the pixels) is about 0.5
    assert out["image"].shape == (8, 1, 16, 16) and out["probabilities"].shape == (8, 2, 16, 16)
    torch.testing.assert_close(out["probabilities"].sum(1), torch.ones(8, 16, 16))
    assert out["uncertainty"].shape == (8, 1, 16, 16) and (out["uncertainty"] >= -1e-6).all()
    assert out["uncertainty_score"].shape == (8,)
    # w inputs give the same result as the z they come from
    w_out = StyleInterpreterInferer(g, latent_kind="w")(g.mapping(z[32:]), ens)
    assert torch.equal(w_out["label"], out["label"])


def test_uncertainty_score_is_the_mean_of_the_top_fraction():
    u = torch.arange(100, dtype=torch.float32).reshape(1, 10, 10)
    assert image_uncertainty_score(u, 0.1).item() == pytest.approx(sum(range(90, 100)) / 10)


def test_bad_annotations_are_refused():
    g = _generator()
    ens = PixelClassifierEnsemble(g.feature_channels, num_classes=2, num_members=2, hidden_channels=(8, 4))
    z = torch.randn(3, 8)
    with pytest.raises(ValueError, match="one mask per latent"):
        train_style_interpreter(g, ens, z, torch.zeros(2, 16, 16, dtype=torch.long), epochs=1)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        train_style_interpreter(g, ens, z, torch.full((3, 16, 16), 2), epochs=1)
    with pytest.raises(ValueError, match="16-pixel images"):
        train_style_interpreter(g, ens, z, torch.zeros(3, 8, 8, dtype=torch.long), epochs=1)
    with pytest.raises(ValueError, match="latent_kind"):
        StyleInterpreterInferer(g, latent_kind="x")


def _benchmark_ensemble(feature_channels, upsample_mode="bilinear"):
    """The benchmark's ensemble (10 members, 256 / 128, 2 classes) with trained-looking batch-norm statistics."""
    torch.manual_seed(2)
    ens = PixelClassifierEnsemble(feature_channels, 2, upsample_mode=upsample_mode)
    with torch.no_grad():
        for bn in (ens.bn1, ens.bn2):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    return ens.eval()


@pytest.mark.parametrize("upsample_mode", ["bilinear", "nearest"])
def test_votes_equal_the_reference_path_at_the_benchmark_widths(upsample_mode):
    # the bundle's generator (channel_base 2048, channel_max 128) at 32 x 32 and the benchmark's ensemble
    torch.manual_seed(0)
    g = StyleGAN2Generator(32, z_dim=256, w_dim=256, mapping_layers=2, channel_base=2048, channel_max=128).eval()
    ens = _benchmark_ensemble(g.feature_channels, upsample_mode)
    z = torch.randn(2, 256, generator=torch.Generator().manual_seed(1))
    out = StyleInterpreterInferer(g)(z, ens)
    with torch.no_grad():
        reference = ens.reference_forward(g(z, noise_mode="const", return_features=True).features, 32)
    votes = majority_vote(reference.permute(0, 1, 3, 4, 2).reshape(10, -1, 2)).reshape(2, 1, 32, 32)
    assert torch.equal(out["label"], votes)
    torch.testing.assert_close(out["probabilities"], reference.softmax(2).mean(0), rtol=1e-4, atol=1e-5)
    # the paper's width (512 channels per map up to 32 x 32), at 32 x 32 from random feature maps
    features = [torch.randn(1, 512, r, r) for r in (4, 8, 16, 32)]
    ens = _benchmark_ensemble([512] * 4, upsample_mode)
    with torch.no_grad():
        reference = ens.reference_forward(features, 32)
        ours = ens(features, 32)  # default chunks, folded batch norm, banded upsampling
    votes = [majority_vote(x.permute(0, 1, 3, 4, 2).reshape(10, -1, 2)) for x in (ours, reference)]
    assert torch.equal(votes[0], votes[1])
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_inferer_runs_under_autocast_with_nearly_the_same_votes(dtype):
    # the CUDA recipe (autocast), here on CPU: every buffer takes the feature maps' dtype
    g = _generator()
    ens = _benchmark_ensemble(g.feature_channels)
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(3))
    label = StyleInterpreterInferer(g)(z, ens)["label"]
    with torch.autocast("cpu", dtype=dtype):
        out = StyleInterpreterInferer(g)(z, ens)
    assert out["label"].dtype == torch.int64 and out["probabilities"].dtype == torch.float32
    assert (out["label"] == label).float().mean() > 0.9
