from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImage

from monai_synth.apps.generation import PairedDatasetFactory, sample_seed
from monai_synth.inferers import PairedGenerationInferer, SeedLatents
from monai_synth.networks.latents import latents_from_seeds
from monai_synth.networks.nets import PairedDCGANGenerator
from monai_synth.utils.export import load_generator
from monai_synth.utils.io import torch_save_atomic

SIZE, LATENT, CLASSES = 16, 8, 3  # 1 image channel + 3 one-hot mask channels


def _export(path, generator=None, components=(1, 1)):
    torch.manual_seed(0)
    generator = generator or PairedDCGANGenerator(SIZE, 1 + CLASSES, LATENT, channels=(16, 8))
    config = {
        "generator_class": "monai_synth.networks.nets.PairedDCGANGenerator",
        "generator": generator.get_config(),
        "data": {
            "image_channels": 1,
            "num_classes": CLASSES,
            "image_size": SIZE,
            "components_per_class": list(components),
        },
    }
    torch_save_atomic({"state_dict": generator.state_dict(), "config": config}, path)
    return path


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "pairs").iterdir())}


@pytest.fixture
def exported(tmp_path):
    return _export(tmp_path / "generator.pt")


def test_generation_writes_pairs_datalist_and_manifest(exported, tmp_path):
    out = tmp_path / "gen"
    summary = PairedDatasetFactory(exported, out, num_samples=10, shard_size=4, batch_size=3, dedup=False).run()
    assert summary["num_generated"] == 10 and summary["num_kept"] == 10 and summary["shards_generated"] == 3
    items = load_decathlon_datalist(str(out / "datalist.json"))
    assert len(items) == 10
    image = LoadImage(image_only=True)(items[0]["image"])
    label = LoadImage(image_only=True)(items[0]["label"])
    assert tuple(image.shape) == (SIZE, SIZE) and tuple(label.shape) == (SIZE, SIZE)
    assert float(image.min()) >= -1 and float(image.max()) <= 1
    assert set(np.unique(np.asarray(label)).tolist()) <= set(range(CLASSES))
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["pairs"][3]
    assert entry["seed"] == sample_seed(0, 3) and entry["kept"] is True
    assert 0.0 <= entry["postprocess_change"] <= 1.0
    assert abs(sum(entry["label_fractions"]) - 1) < 1e-3


def test_pairs_match_the_generator_output_for_their_seed(exported, tmp_path):
    out = tmp_path / "gen"
    PairedDatasetFactory(exported, out, num_samples=3, seed=2, postprocess=False, dedup=False).run()
    network, _ = load_generator(exported)
    expected = network(latents_from_seeds([sample_seed(2, 1)], LATENT))[0, 0].detach().numpy()
    saved = np.asarray(LoadImage(image_only=True)(out / "pairs" / "syn_s2_000001_image.nii.gz"))  # seed in the id
    np.testing.assert_allclose(saved, expected, atol=1e-5)
    datalist = json.loads((out / "datalist.json").read_text())
    assert [d["case_id"] for d in datalist["training"]] == ["syn_s2_000000", "syn_s2_000001", "syn_s2_000002"]


def test_idempotent_resumable_and_extendable(exported, tmp_path):
    out = tmp_path / "gen"
    kwargs = dict(shard_size=4, batch_size=4)
    PairedDatasetFactory(exported, out, num_samples=10, **kwargs).run()
    first = _digests(out)
    again = PairedDatasetFactory(exported, out, num_samples=10, **kwargs).run()
    assert again["shards_generated"] == 0 and again["shards_resumed"] == 3
    assert _digests(out) == first
    # a killed run: shard 1 has no record and one of its files is gone
    (out / "shards" / "shard_00001.json").unlink()
    (out / "pairs" / "syn_000005_label.nii.gz").unlink()
    resumed = PairedDatasetFactory(exported, out, num_samples=10, **kwargs).run()
    assert resumed["shards_generated"] == 1 and _digests(out) == first
    bigger = PairedDatasetFactory(exported, out, num_samples=14, **kwargs).run()
    assert bigger["num_generated"] == 14 and bigger["shards_generated"] == 2  # shard 2 grew, shard 3 new
    assert {k: v for k, v in _digests(out).items() if k in first} == first


def test_refuses_a_folder_holding_another_set(exported, tmp_path):
    out = tmp_path / "gen"
    PairedDatasetFactory(exported, out, num_samples=4).run()
    before = _digests(out)
    with pytest.raises(ValueError, match="seed"):
        PairedDatasetFactory(exported, out, num_samples=4, seed=1).run()
    other = _export(tmp_path / "other.pt", PairedDCGANGenerator(SIZE, 1 + CLASSES, LATENT, channels=(16, 8)))
    torch.manual_seed(5)
    with pytest.raises(ValueError, match="generator_sha256"):
        g = PairedDCGANGenerator(SIZE, 1 + CLASSES, LATENT, channels=(16, 8))
        PairedDatasetFactory(_export(tmp_path / "x.pt", g), out, num_samples=4).run()
    assert _digests(out) == before and other.exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        PairedDatasetFactory(exported, foreign, num_samples=2).run()


class _Constant(PairedDCGANGenerator):
    """Mode collapse: ignores its latent."""

    def forward(self, z):
        return super().forward(torch.zeros_like(z))


def test_dedup_flags_mode_collapse(tmp_path):
    torch.manual_seed(0)
    collapsed = _Constant(SIZE, 1 + CLASSES, LATENT, channels=(16, 8))
    path = tmp_path / "g.pt"
    torch_save_atomic(
        {
            "state_dict": collapsed.state_dict(),
            "config": {
                "generator_class": "monai_synth.networks.nets.PairedDCGANGenerator",
                "generator": collapsed.get_config(),
                "data": {"image_channels": 1, "num_classes": CLASSES},
            },
        },
        path,
    )
    factory = PairedDatasetFactory(path, tmp_path / "gen", num_samples=6, shard_size=4)
    factory.network = collapsed.eval()  # the export stores the plain class; use the collapsed forward
    summary = factory.run()
    assert summary["num_kept"] == 1 and summary["duplicate_rate"] == pytest.approx(5 / 6)
    manifest = json.loads((tmp_path / "gen" / "manifest.json").read_text())
    assert manifest["pairs"][1]["duplicate_of"] == "syn_000000" and "near-duplicate" in manifest["pairs"][1]["reason"]
    assert len(load_decathlon_datalist(str(tmp_path / "gen" / "datalist.json"))) == 1


def test_bad_inputs(exported, tmp_path):
    with pytest.raises(ValueError, match="num_samples"):
        PairedDatasetFactory(exported, tmp_path / "g", num_samples=0)
    with pytest.raises(ValueError, match="num_components"):
        PairedDatasetFactory(exported, tmp_path / "g", num_components=0)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_generator(junk)
    torch.save({"weights": 1}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a monai_synth generator export"):
        load_generator(tmp_path / "plain.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_generator(tmp_path / "missing.pt")


def test_inferer_and_seed_latents(exported):
    network, config = load_generator(exported)
    latents, target = SeedLatents(LATENT)({"seed": torch.tensor([3, 4])})
    assert target is None
    torch.testing.assert_close(latents, latents_from_seeds([3, 4], LATENT))
    out = PairedGenerationInferer()(latents, network)
    assert out.shape == (2, 1 + CLASSES, SIZE, SIZE) and not out.requires_grad
