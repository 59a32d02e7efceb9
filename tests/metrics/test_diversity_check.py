"""check_generator_diversity on exported generators: a constant one is refused, a varied one passes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from monai_synth.metrics import GeneratorCollapseError, check_generator_diversity
from monai_synth.networks.nets import PairedDCGANDiscriminator, PairedDCGANGenerator
from monai_synth.utils.export import export_generator, generator_export_config

DATA = SimpleNamespace(
    image_channels=1,
    num_classes=2,
    summary={"label_names": {"0": "background", "1": "lung"}, "components_per_class": {}, "intensity": {}},
)


def export_dcgan(path: Path, constant: bool) -> Path:
    """A tiny exported PairedDCGANGenerator; ``constant``: its latent projection is zero, so every z gives one pair."""
    torch.manual_seed(0)
    generator = PairedDCGANGenerator(image_size=32, out_channels=2, latent_dim=8, channels=[16, 8])
    discriminator = PairedDCGANDiscriminator(image_size=32, in_channels=2, channels=[8, 16])
    if constant:
        with torch.no_grad():
            generator.project.weight.zero_()
    config = generator_export_config(generator, discriminator, DATA)
    return export_generator(generator, config, path)


def test_constant_generator_is_refused_and_allow_duplicates_overrides(tmp_path: Path):
    path = export_dcgan(tmp_path / "generator.pt", constant=True)
    with pytest.raises(GeneratorCollapseError, match=r"collapsed: 98% of 64 pairs.*--allow_duplicates True"):
        check_generator_diversity(path)
    assert check_generator_diversity(path, allow_duplicates=True) == pytest.approx(63 / 64)


def test_varied_generator_passes(tmp_path: Path):
    path = export_dcgan(tmp_path / "generator.pt", constant=False)
    assert check_generator_diversity(path) < 0.5


def test_generator_of_another_bundle_is_named(tmp_path: Path):
    path = export_dcgan(tmp_path / "generator.pt", constant=False)
    with pytest.raises(ValueError, match="paired_dcgan generator"):
        check_generator_diversity(path, bundle="datasetgan")
