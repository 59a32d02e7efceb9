"""The orientation contract, checked the way a MONAI user checks it: plain ``LoadImaged`` + ``EnsureChannelFirstd``.

Phantom data (left/right asymmetric organs) is written as PNG, as 2D NIfTI, as a 2-channel PNG pair and as
a 3D NIfTI volume. Generator exports come from the paired_dcgan bundle run in-process (PNG and NIfTI) or
from the same export functions the bundle calls (2-channel, volume). A tiny GAN learns no organs in a few
iterations, so the write path is checked with a "generator" that replays a known training pair: the
generated files must then equal the source files read by MONAI, pixel for pixel.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import monai.bundle
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import load_decathlon_datalist
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from PIL import Image

from monai_synth.apps.generation import PairedDatasetFactory
from monai_synth.data import PairedSliceDataset
from monai_synth.data.phantom import PHANTOM_LABELS, generate_phantom, write_phantom_dataset
from monai_synth.networks.nets import PairedDCGANDiscriminator, PairedDCGANGenerator
from monai_synth.transforms import EncodePaired
from monai_synth.utils.export import export_generator, generator_export_config, load_checkpoint

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "paired_dcgan" / "configs"
SIZE = 32
TINY = {
    "image_size": SIZE, "latent_dim": 8, "generator_channels": [16, 8], "discriminator_channels": [8, 16],
    "batch_size": 4, "max_epochs": 1, "iterations_per_epoch": 2, "sample_interval": 2, "checkpoint_interval": 2,
    "log_interval": 1, "num_grid_samples": 4, "device": "cpu", "amp": False,
}  # fmt: skip


def _load(item: dict, base: Path) -> dict:
    """The user's pipeline: MONAI defaults only."""
    files = {
        k: [str(base / p) for p in v] if isinstance(v, list) else str(base / v)
        for k, v in item.items()
        if k in ("image", "label")
    }
    return Compose([LoadImaged(tuple(files)), EnsureChannelFirstd(tuple(files))])(files)


def _centroid(label: torch.Tensor, value: int) -> np.ndarray:
    return np.argwhere(np.asarray(label[0]) == value).mean(axis=0)


class _Replay(torch.nn.Module):
    """A 'generator' drawing one known encoded training pair for every latent."""

    def __init__(self, pair: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("pair", torch.as_tensor(pair, dtype=torch.float32))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.pair[None].expand(z.shape[0], -1, -1, -1)


def _replayed_set(generator_path: Path, out: Path, dataset: PairedSliceDataset, index: int = 0, **kwargs) -> dict:
    """Generate with the real factory (write path unchanged) from a generator replaying training item ``index``."""
    factory = PairedDatasetFactory(
        generator_path, out, num_samples=2, batch_size=2, postprocess=False, dedup=False, **kwargs
    )
    item = dataset.data[index]
    factory.network = _Replay(EncodePaired(num_classes=dataset.num_classes)(item["image"], item["label"]))
    factory.run()
    return json.loads((out / "datalist.json").read_text())["training"][0]


def _bundle_train(dataset_dir: Path, output_dir: Path) -> Path:
    monai.bundle.run(
        config_file=str(CONFIGS / "train.json"),
        dataset_dir=str(dataset_dir),
        output_dir=str(output_dir),
        bundle_root=str(output_dir),  # its models/ folder goes there, not into the working directory
        **TINY,
    )
    return output_dir / "generator.pt"


def _export(dataset: PairedSliceDataset, path: Path) -> Path:
    """A tiny untrained export made by the functions train.json calls."""
    g = PairedDCGANGenerator(SIZE, dataset.pair_channels, latent_dim=8, channels=[16, 8])
    d = PairedDCGANDiscriminator(SIZE, dataset.pair_channels, channels=[8, 16])
    return export_generator(g, generator_export_config(g, d, dataset), path)


@pytest.fixture(scope="module")
def phantom_runs(tmp_path_factory) -> dict[str, dict]:
    """PNG and NIfTI phantoms, each with a paired_dcgan bundle run and a generate.json run."""
    root = tmp_path_factory.mktemp("orientation")
    runs = {}
    for fmt in ("png", "nifti"):
        data = write_phantom_dataset(root / f"data_{fmt}", num_samples=4, image_size=SIZE, formats=(fmt,)).parent
        run = root / f"run_{fmt}"
        generator_path = _bundle_train(data, run)
        monai.bundle.run(config_file=str(CONFIGS / "generate.json"), output_dir=str(run), num_samples=4,
                         batch_size=4, dedup=False, device="cpu")  # fmt: skip
        runs[fmt] = {"data": data, "run": run, "generator": generator_path}
    return runs


@pytest.mark.parametrize("fmt", ["png", "nifti"])
def test_bundle_export_records_the_source_layout(phantom_runs, fmt: str) -> None:
    config = load_checkpoint(phantom_runs[fmt]["generator"])["config"]
    orientation = config["data"]["orientation"]
    assert orientation["layout"] == ("viewer" if fmt == "png" else "index")
    assert np.asarray(orientation["affine"]).shape == (4, 4)


@pytest.mark.parametrize("fmt", ["png", "nifti"])
def test_trained_generator_pairs_load_like_the_sources(phantom_runs, fmt: str) -> None:
    run, data = phantom_runs[fmt]["run"], phantom_runs[fmt]["data"]
    source_items = load_decathlon_datalist(str(data / "datalist.json"), base_dir=str(data))
    generated_items = load_decathlon_datalist(str(run / "generated" / "datalist.json"), base_dir=str(run / "generated"))
    source = _load(source_items[0], Path("/"))
    assert len(generated_items) == 4
    for item in generated_items:
        generated = _load(item, Path("/"))
        assert generated["image"].shape == generated["label"].shape == source["label"].shape == (1, SIZE, SIZE)
        # same axes: the same world directions per array axis (a transposed set would swap the columns)
        np.testing.assert_allclose(np.asarray(generated["image"].affine), np.asarray(source["image"].affine), atol=1e-5)
        np.testing.assert_allclose(np.asarray(generated["label"].affine), np.asarray(source["label"].affine), atol=1e-5)


@pytest.mark.parametrize("fmt", ["png", "nifti"])
def test_generated_pair_equals_the_source_read_by_monai(phantom_runs, fmt: str, tmp_path: Path) -> None:
    data, generator_path = phantom_runs[fmt]["data"], phantom_runs[fmt]["generator"]
    dataset = PairedSliceDataset(data, image_size=SIZE)
    entry = _replayed_set(generator_path, tmp_path / "replayed", dataset, index=1)
    generated = _load(entry, tmp_path / "replayed")
    source_item = json.loads((data / "datalist.json").read_text())["training"][1]
    source = _load(source_item, data)
    assert generated["label"].shape == source["label"].shape == (1, SIZE, SIZE)
    np.testing.assert_array_equal(np.asarray(generated["label"]), np.asarray(source["label"]))
    # organs on the same sides: the left lung, right lung and heart centroids agree with the source's
    for organ in ("left_lung", "right_lung", "heart"):
        value = PHANTOM_LABELS[organ]
        np.testing.assert_allclose(_centroid(generated["label"], value), _centroid(source["label"], value))
    left, right = (_centroid(source["label"], PHANTOM_LABELS[k]) for k in ("left_lung", "right_lung"))
    assert np.abs(left - right).max() > SIZE / 4  # the check can see a transposition (lungs far apart)
    image, expected = np.asarray(generated["image"][0]), np.asarray(source["image"][0], dtype=np.float32)
    assert np.corrcoef(image.ravel(), expected.ravel())[0, 1] > 0.99


def test_png_output_of_a_png_source_loads_like_the_source(tmp_path: Path) -> None:
    """``output_format="png"``: the pairs in the source's own format, pixel for pixel where no rounding applies."""
    data = write_phantom_dataset(tmp_path / "data", num_samples=3, image_size=SIZE, formats=("png",)).parent
    dataset = PairedSliceDataset(data, image_size=SIZE)
    entry = _replayed_set(
        _export(dataset, tmp_path / "generator.pt"), tmp_path / "gen", dataset, 2, output_format="png"
    )
    assert entry["image"].endswith("_image.png") and entry["label"].endswith("_label.png")
    generated = _load(entry, tmp_path / "gen")
    source = _load(json.loads((data / "datalist.json").read_text())["training"][2], data)
    assert generated["label"].shape == source["label"].shape == (1, SIZE, SIZE)
    np.testing.assert_array_equal(np.asarray(generated["label"]), np.asarray(source["label"]))
    # 8-bit source -> [-1, 1] -> 8-bit again: the same grey levels (within rounding)
    assert (
        np.abs(np.asarray(generated["image"], dtype=np.float32) - np.asarray(source["image"], dtype=np.float32)).max()
        <= 1
    )
    with pytest.raises(ValueError, match="output_format"):
        PairedDatasetFactory(tmp_path / "generator.pt", tmp_path / "other", output_format="jpeg")


def test_two_channel_source_loads_as_channels_first(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    training = []
    for seed in range(3):
        image, label = generate_phantom(seed, SIZE)
        first = np.clip((image[0] + 1000) / 1400 * 255, 0, 255).astype(np.uint8)
        names = [f"images/case{seed}_ct.png", f"images/case{seed}_inv.png"]
        Image.fromarray(first).save(data / names[0])
        Image.fromarray(255 - first[:, ::-1].copy()).save(data / names[1])  # a different second channel
        Image.fromarray(label[0]).save(data / f"labels/case{seed}.png")
        training.append({"image": names, "label": f"labels/case{seed}.png"})
    (data / "datalist.json").write_text(json.dumps({"training": training}))
    dataset = PairedSliceDataset(data / "datalist.json", image_size=SIZE)
    assert dataset.image_channels == 2
    generator_path = _export(dataset, tmp_path / "generator.pt")
    entry = _replayed_set(generator_path, tmp_path / "generated", dataset, index=2)
    assert isinstance(entry["image"], list) and len(entry["image"]) == 2
    generated = _load(entry, tmp_path / "generated")
    source = _load(training[2], data)
    assert generated["image"].shape == source["image"].shape == (2, SIZE, SIZE)
    assert generated["label"].shape == (1, SIZE, SIZE)
    np.testing.assert_array_equal(np.asarray(generated["label"]), np.asarray(source["label"]))
    for c in range(2):
        corr = np.corrcoef(np.asarray(generated["image"][c]).ravel(), np.asarray(source["image"][c]).ravel())[0, 1]
        assert corr > 0.99


def test_slices_of_a_nifti_volume_carry_the_source_geometry(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    affine = np.array([[-0.7, 0, 0, 100.0], [0, -0.7, 0, 80.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])
    for case in range(2):
        pairs = [generate_phantom(10 * case + k, SIZE) for k in range(3)]
        volume = np.stack([p[0][0] for p in pairs], axis=-1)  # (H, W, D)
        labels = np.stack([p[1][0] for p in pairs], axis=-1)
        nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), data / f"images/case{case}.nii.gz")
        nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), data / f"labels/case{case}.nii.gz")
    dataset = PairedSliceDataset(data, image_size=SIZE, slice_axis=2)
    generator_path = _export(dataset, tmp_path / "generator.pt")
    entry = _replayed_set(generator_path, tmp_path / "generated", dataset, index=1)  # case0, slice 1
    stored = nib.load(tmp_path / "generated" / entry["label"])
    np.testing.assert_allclose(stored.header.get_zooms()[:2], (0.7, 0.7), rtol=1e-5)
    np.testing.assert_allclose(stored.affine[:3, :3], affine[:3, :3], atol=1e-5)  # direction and slice spacing
    generated = _load(entry, tmp_path / "generated")
    source = _load({"label": "labels/case0.nii.gz"}, data)
    np.testing.assert_array_equal(np.asarray(generated["label"][0]), np.asarray(source["label"][0, :, :, 1]))


def test_old_exports_warn_and_keep_the_old_layout(tmp_path: Path, caplog) -> None:
    data = write_phantom_dataset(tmp_path / "data", num_samples=2, image_size=SIZE, formats=("png",)).parent
    dataset = PairedSliceDataset(data, image_size=SIZE)
    path = _export(dataset, tmp_path / "generator.pt")
    checkpoint = load_checkpoint(path)
    del checkpoint["config"]["data"]["orientation"]
    torch.save(checkpoint, path)
    with caplog.at_level(logging.WARNING):
        entry = _replayed_set(path, tmp_path / "generated", dataset)
    assert "records no source orientation" in caplog.text
    generated = nib.load(tmp_path / "generated" / entry["label"])
    np.testing.assert_array_equal(np.asarray(generated.dataobj), dataset.data[0]["label"][0])  # internal layout
    np.testing.assert_allclose(generated.affine, np.eye(4))
