"""SemanticGAN workflows: semi-supervised data checks, encoder training, the Inferer in a SupervisedEvaluator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from monai.handlers import MeanDice, from_engine
from monai.transforms import AsDiscreted
from PIL import Image

from monai_synth.apps.semanticgan import SemiSupervisedData, encoder_losses, train_semantic_encoder
from monai_synth.inferers import SemanticGANInferer
from monai_synth.networks.nets import SemanticStyleGAN2Generator


def _write(folder: Path, n: int, size: int = 40, channels: int = 1, masks: bool = True) -> Path:
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    if masks:
        (folder / "masks").mkdir()
    for i in range(n):
        shape = (size, size) if channels == 1 else (size, size, channels)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / "images" / f"case_{i}.png")
        if masks:
            mask = np.zeros((size, size), dtype=np.uint8)
            mask[5 : 5 + i + 10, 8:30] = 255
            Image.fromarray(mask).save(folder / "masks" / f"case_{i}.png")
    return folder


def test_labelled_and_unlabelled_images_share_one_scale(tmp_path: Path) -> None:
    labelled = _write(tmp_path / "labelled", 3)
    unlabelled = _write(tmp_path / "unlabelled", 5, size=48, masks=False)
    data = SemiSupervisedData(labelled, unlabelled, image_size=32)
    assert len(data.labelled) == 3 and len(data.unlabelled) == 5 and len(data.images) == 8
    assert data.summary["num_unlabelled"] == 5 and data.num_classes == 2
    assert data.unlabelled.summary["intensity"] == data.labelled.summary["intensity"]
    assert data.labelled[0]["pair"].shape == (2, 32, 32)
    assert data.images[7]["image"].shape == (1, 32, 32)


def test_bad_unlabelled_data_is_refused_with_the_setting_and_file_named(tmp_path: Path) -> None:
    labelled = _write(tmp_path / "labelled", 2)
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"unlabelled_dir .*empty.*no image files"):
        SemiSupervisedData(labelled, empty, image_size=32)
    with pytest.raises(ValueError, match=r"unlabelled_dir .*missing.* does not exist"):
        SemiSupervisedData(labelled, tmp_path / "missing", image_size=32)
    rgb = _write(tmp_path / "rgb", 2, channels=3, masks=False)
    with pytest.raises(
        ValueError, match=r"unlabelled_dir .*rgb has 3-channel images but the labelled data .* 1-channel"
    ):
        SemiSupervisedData(labelled, rgb, image_size=32)
    tiny = _write(tmp_path / "tiny", 2, size=4, masks=False)
    with pytest.raises(ValueError, match=r"unlabelled_dir .*tiny.*case_0.png \(slice 0\) is 4x4 px"):
        SemiSupervisedData(labelled, tiny, image_size=64)


def _constructed(k: int = 2, n: int = 12) -> tuple[SemanticStyleGAN2Generator, torch.Tensor, torch.Tensor]:
    """A generator and images it drew with the masks its own branch gave them: a perfect encoder exists."""
    torch.manual_seed(0)
    g = SemanticStyleGAN2Generator(16, 1, k, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128,
                                   channel_max=16).eval()  # fmt: skip
    with torch.no_grad():
        ws = g.map(torch.randn(n, 16, generator=torch.Generator().manual_seed(1)))
        images, logits = g.synthesize(ws, noise_mode="const")
    return g, images.clamp(-1, 1), logits.argmax(dim=1, keepdim=True)


def test_encoder_training_lowers_image_and_mask_reconstruction() -> None:
    g, images, masks = _constructed()
    labelled, unlabelled = slice(0, 4), slice(4, None)

    def losses(encoder) -> tuple[float, float]:
        with torch.no_grad():
            lu = encoder_losses(g, encoder, images[unlabelled])
            ll = encoder_losses(g, encoder, images[labelled], masks[labelled])
        return float(lu["pixel"]), float(ll["mask"])

    start, _ = train_semantic_encoder(g, images[labelled], masks[labelled], images[unlabelled], steps=0, seed=0)
    trained, history = train_semantic_encoder(g, images[labelled], masks[labelled], images[unlabelled], steps=60,
                                              batch_size=4, learning_rate=1e-3, seed=0, log_interval=20)  # fmt: skip
    (pixel0, mask0), (pixel1, mask1) = losses(start), losses(trained)
    assert trained(images[:2]).shape == (2, g.num_ws, g.w_dim)
    assert pixel1 < 0.8 * pixel0 and mask1 < 0.9 * mask0, (pixel0, pixel1, mask0, mask1)
    assert [h["step"] for h in history] == [20, 40, 60]
    with pytest.raises(ValueError, match=r"generator draws \(B, 1, 16, 16\)"):
        train_semantic_encoder(g, images[:2, :, :8, :8], masks[:2, :, :8, :8], steps=1)


def test_inferer_segments_inside_a_supervised_evaluator() -> None:
    g, images, masks = _constructed(k=3, n=4)
    encoder, _ = train_semantic_encoder(g, images, masks, steps=5, batch_size=4, seed=0)
    inferer = SemanticGANInferer(g, encoder=encoder, num_steps=3, w_avg_samples=500)
    loader = DataLoader(Dataset([{"image": images[i], "label": masks[i]} for i in range(4)]), batch_size=2)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=loader, network=g, inferer=inferer,
        postprocessing=AsDiscreted(keys=("pred", "label"), argmax=(True, False), to_onehot=3),
        key_val_metric={"dice": MeanDice(include_background=False, output_transform=from_engine(["pred", "label"]))},
    )  # fmt: skip
    evaluator.run()
    assert 0.0 <= evaluator.state.metrics["dice"] <= 1.0
    out = SemanticGANInferer(g, encoder=encoder, num_steps=0, output="all")(images[:2])
    assert out["probabilities"].shape == (2, 3, 16, 16) and out["label"].shape == (2, 1, 16, 16)
    assert torch.allclose(out["probabilities"].sum(dim=1), torch.ones(2, 16, 16))
    assert out["uncertainty"].min() >= 0 and out["uncertainty"].max() <= 1 + 1e-6 and out["psnr"].shape == (2,)
    with pytest.raises(ValueError, match="own generator"):
        inferer(images[:1], _constructed()[0])
