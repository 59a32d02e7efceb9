"""Downstream networks of the study (issue 17): torchvision DeepLabV3/FCN, dotted paths, SGD, one study per network."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from monai.utils import optional_import

import monai_synth.evaluation.segmentation as segmentation
from monai_synth.evaluation.config import StudyConfig
from monai_synth.evaluation.segmentation import (
    TorchvisionSegmentation,
    build_network,
    build_optimizer,
    network_class,
    train_segmentation_network,
)
from monai_synth.evaluation.study import SyntheticEvaluationStudy

TINY = {"image_size": 32, "max_epochs": 1, "batch_size": 4, "compute_fid": False, "figures": False, "device": "cpu"}
_, HAS_TORCHVISION = optional_import("torchvision.models.segmentation", name="deeplabv3_resnet50")

USER_MODULE = """
import torch


class TinySegNet(torch.nn.Module):
    def __init__(self, in_channels, out_channels, width=4):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, width, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(width, out_channels, 1)
        )

    def forward(self, x):
        return self.body(x)


class NotAModule:
    pass
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch) -> str:
    (tmp_path / "my_nets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_nets"
    sys.modules.pop("my_nets", None)


def _items(n: int = 4) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        label = torch.zeros((1, 32, 32), dtype=torch.long)
        label[:, 8:20, 10:24] = 1
        out.append(
            {"image": (label.float() + 0.1 * torch.randn((1, 32, 32), generator=g)).numpy(), "label": label.numpy()}
        )
    return out


def test_dotted_path_network_trains_one_step(user_module: str) -> None:
    network = build_network(f"{user_module}.TinySegNet", 1, 2, width=3)
    assert network.body[0].out_channels == 3
    result = train_segmentation_network(network, _items(), [], 2, max_epochs=1, batch_size=4)
    assert result.iterations == 1 and len(result.train_loss) == 1


def test_bad_network_names_are_refused(user_module: str) -> None:
    with pytest.raises(ValueError, match="not an nn.Module"):
        network_class(f"{user_module}.NotAModule")
    with pytest.raises(ValueError, match="cannot import"):
        network_class(f"{user_module}.Missing")
    with pytest.raises(ValueError, match="not a network of monai.networks.nets.*DeepLabV3"):
        network_class("UNett")


@pytest.mark.parametrize("network", ["UNett", "my_nets.NotAModule"])
def test_bad_network_fails_before_any_training(tmp_path: Path, monkeypatch, user_module: str, network: str) -> None:
    import monai_synth.evaluation.study as study_module

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(study_module, "train_segmentation_network", no_training)
    with pytest.raises(ValueError, match="network="):
        SyntheticEvaluationStudy(tmp_path, arms=["real"], phantom_samples=6, network=network, **TINY).run()
    assert not (tmp_path / "results.json").exists()


class _FakeResNetSegmentation(torch.nn.Module):
    """Stand-in of a torchvision segmentation model: a ``backbone.conv1`` stem and ``{"out": logits}``."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.backbone = torch.nn.Module()
        self.backbone.conv1 = torch.nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.head = torch.nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        y = self.head(self.backbone.conv1(x))
        return {"out": torch.nn.functional.interpolate(y, size=x.shape[2:]), "aux": None}


def test_torchvision_wrapper_adapts_the_stem_and_never_downloads(monkeypatch) -> None:
    fake = types.ModuleType("torchvision.models.segmentation")
    fake.deeplabv3_resnet50 = lambda **kw: _FakeResNetSegmentation(**kw)
    fake.fcn_resnet50 = lambda **kw: _FakeResNetSegmentation(**kw)
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.models", types.ModuleType("torchvision.models"))
    monkeypatch.setitem(sys.modules, "torchvision.models.segmentation", fake)
    for name in ("DeepLabV3", "FCN"):
        network = build_network(name, 1, 3)
        assert isinstance(network, TorchvisionSegmentation)
        assert network.model.kwargs == {"weights": None, "weights_backbone": None, "aux_loss": False}
        assert network.model.backbone.conv1.in_channels == 1
        assert network(torch.zeros(2, 1, 32, 32)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="never downloaded"):
        build_network("FCN", 1, 2, weights="DEFAULT")


@pytest.mark.skipif(
    not HAS_TORCHVISION,
    reason="torchvision is not importable here: the only PyPI torchvision for torch 2.13.0 (0.28.0) is a CUDA build "
    "whose _C.so needs libtorch_cuda.so, absent from torch 2.13.0+cpu ('operator torchvision::nms does not exist')",
)
@pytest.mark.parametrize("name", ["DeepLabV3", "FCN"])
def test_torchvision_networks_train_one_step(name: str) -> None:
    network = build_network(name, 1, 2)
    result = train_segmentation_network(network, _items(2), [], 2, max_epochs=1, batch_size=2)
    assert result.iterations == 1


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed")
def test_torchvision_networks_without_torchvision_say_how_to_install() -> None:
    with pytest.raises(ImportError, match=r"monai_synth\[torchvision\]"):
        build_network("DeepLabV3", 1, 2)


def test_sgd_options_reach_the_optimiser(monkeypatch) -> None:
    seen = []

    def spy(*args, **kwargs):
        optimizer = build_optimizer(*args, **kwargs)
        seen.append(optimizer)
        return optimizer

    monkeypatch.setattr(segmentation, "build_optimizer", spy)
    network = build_network("UNet", 1, 2, channels=(4, 8), strides=(2,), num_res_units=0)
    train_segmentation_network(
        network, _items(), [], 2, max_epochs=1, batch_size=4, learning_rate=1e-5,
        optimizer="sgd", momentum=0.99, nesterov=True, weight_decay=5e-4,
    )  # fmt: skip
    [optimizer] = seen
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (1e-5, 0.99, True, 5e-4)


def test_optimizer_settings_are_checked(tmp_path: Path) -> None:
    config = StudyConfig(output_dir=str(tmp_path), optimizer="sgd", momentum=0.99, nesterov=True, weight_decay=5e-4)
    assert config.optimizer == "SGD" and config.momentum == 0.99 and config.nesterov is True
    with pytest.raises(ValueError, match="--optimizer"):
        StudyConfig(output_dir=str(tmp_path), optimizer="rmsprop")
    with pytest.raises(ValueError, match="--nesterov needs"):
        StudyConfig(output_dir=str(tmp_path), optimizer="adam", nesterov=True)
    with pytest.raises(ValueError, match="nesterov=True needs momentum"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], "sgd", nesterov=True)


def test_one_study_per_network_with_one_table_each(tmp_path: Path, user_module: str) -> None:
    networks = ["UNet", f"{user_module}.TinySegNet"]
    results = SyntheticEvaluationStudy(
        tmp_path, arms=["real"], phantom_samples=8, networks=networks,
        network_kwargs={"UNet": {"channels": (4, 8), "strides": (2,)}, networks[1]: {"width": 2}},
        optimizer="sgd", momentum=0.9, learning_rate=1e-3, **TINY,
    ).run()  # fmt: skip
    assert list(results["networks"]) == networks
    for name in networks:
        sub = results["networks"][name]
        assert sub["config"]["network"] == name and sub["config"]["optimizer"] == "SGD"
        assert (tmp_path / name.replace("/", "_") / "report.md").is_file()
    assert results["networks"]["UNet"]["config"]["network_kwargs"] == {"channels": (4, 8), "strides": (2,)}
    report = (tmp_path / "report.md").read_text()
    assert report.count("### test-R: real held-out cases") == 2
    assert "## Network `UNet`" in report and f"## Network `{networks[1]}`" in report
    assert (tmp_path / "results.json").is_file()
