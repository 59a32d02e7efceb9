from __future__ import annotations

import pytest
import torch

from monai_synth.utils.bundle import check_overrides, resolve_device

SETTINGS = {
    "image_size": 64,
    "learning_rate": 4e-4,
    "resume": True,
    "channels": [8],
    "dataset_dir": None,
    "device": "auto",
}


def test_known_overrides_of_the_right_type_pass() -> None:
    argv = ["run", "--config_file", "x.json", "--image_size", "32", "--learning_rate", "1", "--resume", "False",
            "--channels", "[4, 8]", "--dataset_dir", "/data", "--device=cpu"]  # fmt: skip
    assert check_overrides(SETTINGS, argv) is True


def test_unknown_override_is_named_with_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"Unknown setting\(s\) --image_sise; this bundle accepts: .*--image_size"):
        check_overrides(SETTINGS, ["run", "--config_file", "x.json", "--image_sise", "32"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--image_size", "32.5"], "--image_size expects"),
        (["--image_size", "big"], "--image_size expects"),
        (["--resume", "false"], "write True or False"),
        (["--channels", "8"], "--channels expects"),
        (["--learning_rate", "True"], "--learning_rate expects"),
    ],
)
def test_wrong_types_are_refused(argv, message) -> None:
    with pytest.raises(ValueError, match=message):
        check_overrides(SETTINGS, ["run", *argv])


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cpu"):
            resolve_device("cuda")
