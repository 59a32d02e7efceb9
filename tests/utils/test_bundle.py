from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import run as bundle_run

from monai_synth.utils.bundle import check_overrides, override_settings, resolve_device, validate_overrides

REPO = Path(__file__).resolve().parents[2]

CONFIG = {
    "imports": ["$import monai_synth", "$import monai_synth.utils.bundle", "$import pathlib"],
    "output_dir": "out",
    "image_size": 64,
    "learning_rate": 4e-4,
    "resume": True,
    "channels": [8],
    "dataset_dir": None,
    "device": "auto",
    "marker": "$@output_dir + '/ran.json'",
    "network": {"_target_": "torch.nn.Identity"},
    "initialize": ["$monai_synth.utils.bundle.check_overrides()"],
    "run": [
        "$pathlib.Path(@output_dir).mkdir(parents=True, exist_ok=True)",
        "$pathlib.Path(@marker).write_text(str({'image_size': @image_size, 'resume': @resume}))",
    ],
}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "configs" / "train.json"
    path.parent.mkdir()
    path.write_text(json.dumps(CONFIG))
    return path


def test_settings_are_the_value_keys() -> None:
    settings = override_settings(CONFIG)
    assert "image_size" in settings and "marker" in settings
    assert not {"network", "imports", "initialize", "run"} & set(settings)


def test_known_overrides_of_the_right_type_pass() -> None:
    overrides = {"image_size": 32, "learning_rate": 1, "resume": False, "channels": [4, 8], "dataset_dir": "/data",
                 "device": "cpu", "marker": "elsewhere.json", "network#_target_": "torch.nn.ReLU"}  # fmt: skip
    validate_overrides(CONFIG, overrides)
    validate_overrides(CONFIG, {"channels": 16})  # one value for a list setting


def test_unknown_override_is_named_with_a_close_match_and_the_accepted_ones() -> None:
    with pytest.raises(
        ValueError, match=r"Unknown setting\(s\) --image_sise \(did you mean --image_size\?\); .*--learning_rate"
    ):
        validate_overrides(CONFIG, {"image_sise": 32})
    with pytest.raises(ValueError, match=r"--network#channels"):
        validate_overrides(CONFIG, {"network#channels": 3})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image_size": 32.5}, "--image_size expects"),
        ({"image_size": "big"}, "--image_size expects"),
        ({"resume": "false"}, "write True or False"),
        ({"channels": "8"}, "--channels expects"),
        ({"channels": 8.5}, "--channels expects"),
        ({"learning_rate": True}, "--learning_rate expects"),
    ],
)
def test_wrong_types_are_refused(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        validate_overrides(CONFIG, overrides)


def test_reference_and_none_values_are_accepted() -> None:
    validate_overrides(CONFIG, {"image_size": "$@channels[0] * 8", "channels": "@image_size", "learning_rate": None})


def test_outside_a_workflow_nothing_is_checked() -> None:
    assert check_overrides() is True


def test_monai_bundle_run_from_python_checks_the_overrides(config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "ok"
    bundle_run(config_file=str(config_file), output_dir=str(out), image_size=32)
    assert (out / "ran.json").read_text() == str({"image_size": 32, "resume": True})
    with pytest.raises(Exception) as info:
        bundle_run(config_file=str(config_file), output_dir=str(tmp_path / "typo"), max_epoch=5)
    assert "Unknown setting(s) --max_epoch" in _chain(info.value)
    with pytest.raises(Exception) as info:
        bundle_run(config_file=str(config_file), output_dir=str(tmp_path / "type"), resume="no")
    assert "--resume expects" in _chain(info.value)
    assert not (tmp_path / "typo").exists() and not (tmp_path / "type").exists()


def _chain(error: BaseException | None) -> str:
    text = []
    while error is not None:
        text.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(text)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_args_file_overrides_are_checked_and_the_last_line_is_ours(config_file: Path, tmp_path: Path) -> None:
    args_file = tmp_path / "args.json"
    args_file.write_text(
        json.dumps({"config_file": str(config_file), "output_dir": str(tmp_path / "a"), "image_sise": 3})
    )
    result = _cli(["--args_file", str(args_file)], tmp_path)  # the command line: our message is the last line
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("monai_synth: ValueError: Unknown setting(s) --image_sise")
    args_file.write_text(
        json.dumps({"config_file": str(config_file), "output_dir": str(tmp_path / "a"), "channels": 2.5})
    )
    with pytest.raises(Exception) as info:
        bundle_run(args_file=str(args_file))
    assert "--channels expects" in _chain(info.value)
    assert not (tmp_path / "a").exists()
    args_file.write_text(
        json.dumps({"config_file": str(config_file), "output_dir": str(tmp_path / "a"), "image_size": 16})
    )
    bundle_run(args_file=str(args_file), resume=False)
    assert (tmp_path / "a" / "ran.json").read_text() == str({"image_size": 16, "resume": False})


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cpu"):
            resolve_device("cuda")
