"""ProjectionSegmentationInferer: project-then-classify as a MONAI Inferer inside a SupervisedEvaluator."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from monai.handlers import MeanDice, from_engine
from monai.transforms import AsDiscreted, Compose

from monai_synth.inferers import ProjectionSegmentationInferer, StyleInterpreterInferer
from monai_synth.networks.nets import PixelClassifierEnsemble, StyleGAN2Generator

VIEWER = {"layout": "viewer", "affine": None}


def _parts(size: int = 16) -> tuple[StyleGAN2Generator, PixelClassifierEnsemble]:
    torch.manual_seed(0)
    g = StyleGAN2Generator(size, 1, 0, "image", z_dim=16, w_dim=16, mapping_layers=2, channel_base=128,
                           channel_max=16).eval()  # fmt: skip
    ensemble = PixelClassifierEnsemble(g.feature_channels, num_classes=3, num_members=3, hidden_channels=(8, 4)).eval()
    return g, ensemble


def _targets(g: StyleGAN2Generator, ensemble: PixelClassifierEnsemble, n: int = 3):
    """Generated images with the interpreter's labels of their true latents (the best a projection can do)."""
    with torch.no_grad():
        ws = g.map(torch.randn(n, g.z_dim, generator=torch.Generator().manual_seed(1)))
    out = StyleInterpreterInferer(g, latent_kind="w")(ws, ensemble)
    return out["image"].clamp(-1, 1), out["label"]


def test_inputs_in_monai_layout_give_outputs_in_monai_layout() -> None:
    g, ensemble = _parts()
    images, _ = _targets(g, ensemble)
    plain = ProjectionSegmentationInferer(g, num_steps=10, w_avg_samples=1000, output="all")(images, ensemble)
    # a PNG-trained generator sees MONAI-loaded (transposed) images: converted in, converted back out
    viewer = ProjectionSegmentationInferer(g, orientation=VIEWER, num_steps=10, w_avg_samples=1000, output="all")
    transposed = viewer(images.transpose(-1, -2), ensemble)
    for key in ("label", "probabilities", "uncertainty", "reconstruction"):
        torch.testing.assert_close(transposed[key], plain[key].transpose(-1, -2))
    assert plain["probabilities"].shape == (3, 3, 16, 16) and plain["label"].shape == (3, 1, 16, 16)
    torch.testing.assert_close(plain["probabilities"].sum(dim=1), torch.ones(3, 16, 16))
    assert plain["psnr"].shape == (3,) and plain["uncertainty_score"].shape == (3,)
    start = ProjectionSegmentationInferer(g, num_steps=1, w_avg_samples=1000, output="all")(images, ensemble)
    assert (plain["psnr"] > start["psnr"] + 3).all()  # the projection does reconstruct the images


def test_segments_real_images_inside_a_supervised_evaluator() -> None:
    g, ensemble = _parts()
    images, labels = _targets(g, ensemble, n=2)
    data = [{"image": images[i], "label": labels[i]} for i in range(images.shape[0])]
    inferer = ProjectionSegmentationInferer(g, num_steps=20, w_avg_samples=1000)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(data), batch_size=2),
        network=ensemble,
        inferer=inferer,
        postprocessing=Compose([AsDiscreted("pred", argmax=True, to_onehot=3), AsDiscreted("label", to_onehot=3)]),
        key_val_metric={"dice": MeanDice(include_background=True, output_transform=from_engine(["pred", "label"]))},
    )
    evaluator.run()  # runs under torch.no_grad: the projection enables gradients itself
    assert 0.0 <= evaluator.state.metrics["dice"] <= 1.0
    # the evaluator's predictions are the inferer's (the projection is seeded, so a direct call repeats it)
    direct = inferer(images, ensemble).argmax(dim=1)
    predicted = torch.stack([out["pred"].argmax(dim=0) for out in evaluator.state.output])
    torch.testing.assert_close(predicted, direct)


def test_bad_output_kind() -> None:
    g, _ = _parts()
    with pytest.raises(ValueError, match="output must be one of"):
        ProjectionSegmentationInferer(g, output="logits")
