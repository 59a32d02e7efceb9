"""The export contract: generator / interpreter round trips, sha256, clear errors for files of the wrong kind."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from monai_synth.networks.latents import latents_from_seeds
from monai_synth.networks.nets import (
    PairedDCGANDiscriminator,
    PairedDCGANGenerator,
    PixelClassifierEnsemble,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
)
from monai_synth.utils.export import (
    export_generator,
    file_sha256,
    generator_export_config,
    load_discriminator,
    load_generator,
    load_interpreter,
    save_interpreter,
)

DATA = SimpleNamespace(
    image_channels=1,
    num_classes=2,
    summary={"label_names": {"0": "background", "1": "lung"}, "components_per_class": [1, 2], "intensity": "fixed"},
)


def _dcgan(tmp_path: Path) -> tuple[PairedDCGANGenerator, Path]:
    torch.manual_seed(0)
    g = PairedDCGANGenerator(16, 2, 8, channels=(16, 8))
    d = PairedDCGANDiscriminator(16, 2, channels=(8, 16))
    config = generator_export_config(g, d, DATA, iterations_per_epoch=5)
    return g.eval(), export_generator(g, config, tmp_path / "dcgan" / "generator.pt", iteration=3)


def _stylegan(tmp_path: Path) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator, Path]:
    torch.manual_seed(0)
    kw = {"image_channels": 1, "mask_channels": 1, "mode": "paired", "channel_base": 64, "channel_max": 8}
    g = StyleGAN2Generator(8, z_dim=4, w_dim=8, mapping_layers=1, **kw)
    d = StyleGAN2Discriminator(8, **kw)
    config = generator_export_config(g, d, DATA, latent_distribution="normal", batch_size=4)
    return g.eval(), d, export_generator(g, config, tmp_path / "sg2" / "generator.pt")


def test_generator_export_round_trip_gives_the_same_pairs(tmp_path: Path) -> None:
    g, path = _dcgan(tmp_path)
    network, config = load_generator(path, bundle="paired_dcgan")
    assert config["generator_class"] == "monai_synth.networks.nets.PairedDCGANGenerator"
    assert config["data"] == {"image_size": 16, "image_channels": 1, "num_classes": 2, **DATA.summary}
    assert config["iterations_per_epoch"] == 5 and "latent" not in config  # DCGAN: U[-1, 1] implied
    assert torch.load(path, weights_only=True)["iteration"] == 3
    z = latents_from_seeds([0, 5], 8)
    with torch.no_grad():
        torch.testing.assert_close(network(z), g(z))
    assert not network.training

    sg, _, sg_path = _stylegan(tmp_path)
    network, config = load_generator(sg_path, bundle="datasetgan")
    assert config["latent"] == {"dim": 4, "distribution": "normal"} and config["batch_size"] == 4
    z = latents_from_seeds([1, 2], 4, distribution="normal")
    with torch.no_grad():
        torch.testing.assert_close(network(z, noise_mode="const"), sg(z, noise_mode="const"))


def test_file_sha256_is_the_sha256_of_the_bytes_and_stable(tmp_path: Path) -> None:
    _, path = _dcgan(tmp_path)
    digest = file_sha256(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(str(path))
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 9000)  # more than one 1 MiB block
    assert file_sha256(big) == hashlib.sha256(big.read_bytes()).hexdigest()


def test_interpreter_round_trip_checks_its_generator(tmp_path: Path) -> None:
    generator, _, generator_path = _stylegan(tmp_path)
    torch.manual_seed(1)
    ensemble = PixelClassifierEnsemble(generator.feature_channels, 2, num_members=2, hidden_channels=(8, 4))
    path = save_interpreter(ensemble, tmp_path / "interpreter.pt", file_sha256(generator_path), {"0": "bg", "1": "fg"},
                            train_ids=["a"])  # fmt: skip
    loaded, checkpoint = load_interpreter(path, generator_path)
    assert checkpoint["label_names"] == {"0": "bg", "1": "fg"} and checkpoint["train_ids"] == ["a"]
    assert not loaded.training
    for name, value in ensemble.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)
    _, other = _dcgan(tmp_path)
    with pytest.raises(ValueError, match=r"interpreter\.pt was trained on .*another generator.*sha256 differs"):
        load_interpreter(path, other)
    with pytest.raises(ValueError, match=r"generator\.pt is not a style-interpreter checkpoint"):
        load_interpreter(generator_path)


def test_discriminator_comes_from_a_training_checkpoint(tmp_path: Path) -> None:
    _, d, generator_path = _stylegan(tmp_path)
    checkpoint = tmp_path / "checkpoint_last.pt"
    torch.save({"states": {"discriminator": d.state_dict()}, "config": {"discriminator": d.get_config()}}, checkpoint)
    loaded = load_discriminator(checkpoint)
    assert not any(p.requires_grad for p in loaded.parameters())
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), d.eval()(x))
    with pytest.raises(ValueError, match=r"generator\.pt holds no StyleGAN2 discriminator"):
        load_discriminator(generator_path)


def test_wrong_bundle_and_malformed_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    _, dcgan_path = _dcgan(tmp_path)
    _, _, sg_path = _stylegan(tmp_path)
    with pytest.raises(ValueError, match=r"dcgan/generator\.pt is a paired_dcgan generator.*bundles/paired_dcgan"):
        load_generator(dcgan_path, bundle="datasetgan")
    with pytest.raises(ValueError, match=r"sg2/generator\.pt is a datasetgan generator.*bundles/datasetgan"):
        load_generator(sg_path, bundle="paired_dcgan")

    broken = torch.load(sg_path, weights_only=True)
    del broken["config"]["generator"]["mode"]
    torch.save(broken, tmp_path / "no_mode.pt")
    with pytest.raises(ValueError, match=r"no_mode\.pt is not a monai_synth generator export: missing 'mode'"):
        load_generator(tmp_path / "no_mode.pt")
    broken = torch.load(dcgan_path, weights_only=True)
    del broken["config"]["data"]["num_classes"]
    torch.save(broken, tmp_path / "no_classes.pt")
    with pytest.raises(
        ValueError, match=r"no_classes\.pt is not a monai_synth generator export: missing 'num_classes'"
    ):
        load_generator(tmp_path / "no_classes.pt")
    broken = torch.load(dcgan_path, weights_only=True)
    broken["config"]["generator_class"] = "os.system"
    torch.save(broken, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match=r"foreign\.pt is not a monai_synth generator export"):
        load_generator(tmp_path / "foreign.pt")
    broken = torch.load(dcgan_path, weights_only=True)
    broken["config"]["generator"]["latent_dim"] = 9
    torch.save(broken, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match=r"mismatch\.pt: its weights do not fit"):
        load_generator(tmp_path / "mismatch.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt is not a monai_synth generator export"):
        load_generator(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match=r"absent\.pt"):
        load_generator(tmp_path / "absent.pt")
