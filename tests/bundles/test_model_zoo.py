"""Every bundle as a model-zoo folder: ``--bundle_root`` copies of the bundles receive their trained weights in
``models/`` with a ``network_data_format`` that describes them, ``ckpt_export`` writes TorchScript that plain
``torch.jit.load`` runs (in a process that never imports monai_synth) to the eager output, and the shipped
``metadata.json`` / ``large_files.yml`` are valid.

The bundles are copied to a temporary folder first, so no test writes into the repository's ``bundles/``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bundle_helpers import REPO, SCHEMA, bundle, ok
from monai.bundle import ConfigParser

from monai_synth.evaluation.inference import load_study_model
from monai_synth.utils.export import load_generator
from monai_synth.utils.model_zoo import publish_model, publish_study_model

BUNDLES = ["paired_dcgan", "datasetgan", "synthetic_evaluation"]

# loads a TorchScript file and runs it on saved inputs: no monai_synth (nor monai) import in this process
_JIT_RUNNER = """
import sys, torch
net = torch.jit.load(sys.argv[1])
out = net(torch.load(sys.argv[2]))
torch.save(out, sys.argv[3])
print(sorted({m.split('.')[0] for m in sys.modules} & {'monai_synth', 'monai'}))
"""


def _bundle_copy(name: str, root: Path) -> Path:
    """A model-zoo folder of the bundle: configs, docs, LICENSE and large_files.yml, outside the repository."""
    target = root / name
    shutil.copytree(REPO / "bundles" / name, target, ignore=shutil.ignore_patterns("models", "__pycache__"))
    return target


def _run(bundle_root: Path, config: str, *overrides: str) -> None:
    ok(
        bundle(
            [
                "run",
                "--config_file",
                str(bundle_root / "configs" / config),
                "--bundle_root",
                str(bundle_root),
                *overrides,
            ],
            cwd=bundle_root.parent,
        )
    )


def _verify(meta_file: Path, cwd: Path) -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"offline bundle schema {SCHEMA} is absent (verify_metadata would download it)")
    ok(bundle(["verify_metadata", "--meta_file", str(meta_file), "--filepath", str(SCHEMA)], cwd=cwd))


def _jit_matches_eager(ts_file: Path, eager: torch.nn.Module, inputs: torch.Tensor, tmp: Path) -> None:
    """``torch.jit.load`` in a fresh interpreter without monai_synth reproduces ``eager(inputs)`` to 1e-5."""
    torch.save(inputs, tmp / "inputs.pt")
    (tmp / "jit_runner.py").write_text(_JIT_RUNNER)
    done = subprocess.run(
        [sys.executable, str(tmp / "jit_runner.py"), str(ts_file), str(tmp / "inputs.pt"), str(tmp / "out.pt")],
        cwd=tmp,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout  # neither monai_synth nor monai was imported
    with torch.no_grad():
        expected = eager(inputs)
    scripted = torch.load(tmp / "out.pt", weights_only=True)
    assert scripted.shape == expected.shape
    assert torch.allclose(scripted, expected, atol=1e-5, rtol=0), (scripted - expected).abs().max()


def _format(meta_file: Path) -> dict:
    return json.loads(meta_file.read_text())["network_data_format"]


def test_paired_dcgan_publishes_to_models_and_exports_scripted_torchscript(tmp_path: Path) -> None:
    root = _bundle_copy("paired_dcgan", tmp_path)
    shipped = _format(root / "configs" / "metadata.json")
    run = tmp_path / "runs" / "paired_dcgan"
    tiny = [
        "--image_size", "32", "--latent_dim", "8", "--generator_channels", "[16, 8]",
        "--discriminator_channels", "[8, 16]", "--batch_size", "4", "--phantom_samples", "6",
        "--max_epochs", "1", "--iterations_per_epoch", "2", "--device", "cpu",
    ]  # fmt: skip
    _run(root, "train.json", *tiny, "--output_dir", str(run))
    # the run keeps its record in output_dir; the trained generator is published to <bundle_root>/models
    assert (root / "models" / "generator.pt").read_bytes() == (run / "generator.pt").read_bytes()
    config = json.loads((root / "models" / "generator_config.json").read_text())  # readable without torch
    assert config == json.loads(json.dumps(torch.load(run / "generator.pt", weights_only=True)["config"]))
    fmt = _format(root / "configs" / "metadata.json")
    assert fmt != shipped and fmt == _format(root / "models" / "metadata.json")
    assert fmt["inputs"]["latent"]["num_channels"] == 8 and fmt["inputs"]["latent"]["value_range"] == [-1, 1]
    pair = fmt["outputs"]["pair"]
    assert pair["num_channels"] == 7 and pair["spatial_shape"] == [32, 32]  # image + 6 one-hot phantom classes
    assert pair["channel_def"]["0"] == "image" and pair["channel_def"]["3"] == "mask right_lung"
    _verify(root / "configs" / "metadata.json", tmp_path)

    ts = root / "models" / "generator.ts"
    ok(
        bundle(
            [
                "ckpt_export", "--net_id", "network_def", "--filepath", str(ts),
                "--ckpt_file", str(root / "models" / "generator.pt"), "--key_in_ckpt", "state_dict",
                "--config_file", str(root / "configs" / "inference.json"),
                "--generator_path", str(root / "models" / "generator.pt"), "--bundle_root", str(root),
            ],
            cwd=tmp_path,
        )
    )  # fmt: skip
    # publishing can be switched off: a run with --models_dir "" leaves models/ alone
    _run(root, "train.json", *tiny, "--output_dir", str(tmp_path / "runs" / "off"), "--models_dir", "")
    assert (tmp_path / "runs" / "off" / "generator.pt").is_file()
    assert (root / "models" / "generator.pt").read_bytes() == (run / "generator.pt").read_bytes()

    generator, _ = load_generator(root / "models" / "generator.pt")
    z = torch.rand(3, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1  # batch size != anything used above
    _jit_matches_eager(ts, generator, z, tmp_path)
    extra = {"metadata.json": ""}
    torch.jit.load(ts, _extra_files=extra)
    assert json.loads(extra["metadata.json"])["network_data_format"] == fmt  # the .ts carries the trained format


def test_datasetgan_publishes_generator_and_interpreter_and_traces_the_generator(tmp_path: Path) -> None:
    root = _bundle_copy("datasetgan", tmp_path)
    run = tmp_path / "runs" / "datasetgan"
    tiny = [
        "--image_size", "32", "--z_dim", "16", "--w_dim", "16", "--channel_base", "256", "--channel_max", "16",
        "--batch_size", "4", "--kimg", "0.016", "--phantom_samples", "8", "--phantom_binary", "True",
        "--device", "cpu", "--mode", "paired",
    ]  # fmt: skip
    _run(root, "train.json", *tiny, "--output_dir", str(run))
    assert (root / "models" / "generator.pt").read_bytes() == (run / "generator.pt").read_bytes()
    fmt = _format(root / "models" / "metadata.json")
    assert fmt["inputs"]["latent"]["num_channels"] == 16 and "normal" in fmt["inputs"]["latent"]["format"]
    assert fmt["outputs"]["pair"]["num_channels"] == 2 and fmt["outputs"]["pair"]["spatial_shape"] == [32, 32]
    assert "label" not in fmt["outputs"]

    ok(bundle(["run", "--config_file", str(root / "configs" / "export_annotation.json"), "--output_dir", str(run),
               "--num_samples", "6", "--device", "cpu"], cwd=tmp_path))  # fmt: skip
    _run(
        root, "train_interpreter.json", "--output_dir", str(run), "--labels_dir", str(run / "annotation" / "auto_labels"),
        "--epochs", "2", "--num_members", "2", "--hidden_channels", "[8, 4]", "--pixels_per_image", "64",
        "--device", "cpu",
    )  # fmt: skip
    assert (root / "models" / "interpreter.pt").read_bytes() == (run / "interpreter.pt").read_bytes()
    assert json.loads((root / "models" / "interpreter_config.json").read_text())["num_classes"] == 2
    fmt = _format(root / "configs" / "metadata.json")
    assert fmt == _format(root / "models" / "metadata.json")
    assert fmt["outputs"]["label"]["num_channels"] == 1 and fmt["outputs"]["label"]["value_range"] == [0, 1]
    _verify(root / "configs" / "metadata.json", tmp_path)

    ts = root / "models" / "generator.ts"
    ok(
        bundle(
            [
                "ckpt_export", "--net_id", "network_def", "--filepath", str(ts),
                "--ckpt_file", str(root / "models" / "generator.pt"), "--key_in_ckpt", "state_dict",
                "--config_file", str(root / "configs" / "inference.json"),
                "--generator_path", str(root / "models" / "generator.pt"), "--label_source", "generator",
                "--use_trace", "True", "--input_shape", "[1, 16]", "--bundle_root", str(root),
            ],
            cwd=tmp_path,
        )
    )  # fmt: skip
    generator, _ = load_generator(root / "models" / "generator.pt")
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))  # traced at batch 1, run at batch 3
    _jit_matches_eager(ts, generator, z, tmp_path)


def test_study_publishes_a_segmenter_and_exports_it(tmp_path: Path) -> None:
    root = _bundle_copy("synthetic_evaluation", tmp_path)
    run = tmp_path / "runs" / "study"
    _run(
        root, "evaluate.json", "--arms", "['real','synthetic']", "--num_synthetic", "[4]", "--max_epochs", "1",
        "--image_size", "32", "--phantom_samples", "10", "--phantom_generated_samples", "10", "--compute_fid", "False",
        "--device", "cpu", "--output_dir", str(run),
    )  # fmt: skip
    published = root / "models" / "model.pt"  # the first arm of the study ("real") by default
    assert published.read_bytes() == (run / "models" / "real" / "fold0" / "model.pt").read_bytes()
    fmt = _format(root / "configs" / "metadata.json")
    assert fmt["inputs"]["image"]["num_channels"] == 1 and fmt["inputs"]["image"]["spatial_shape"] == [32, 32]
    assert fmt["outputs"]["pred"]["num_channels"] == 6 and fmt["outputs"]["pred"]["channel_def"]["1"] == "left_lung"
    _verify(root / "models" / "metadata.json", tmp_path)
    with pytest.raises(FileNotFoundError, match="hybrid"):
        publish_study_model(run, tmp_path / "other", None, arm="hybrid")

    ts = root / "models" / "model.ts"
    ok(
        bundle(
            [
                "ckpt_export", "--net_id", "network_def", "--filepath", str(ts), "--ckpt_file", str(published),
                "--key_in_ckpt", "state_dict", "--config_file", str(root / "configs" / "inference.json"),
                "--model_path", str(published), "--bundle_root", str(root),
            ],
            cwd=tmp_path,
        )
    )  # fmt: skip
    network, _ = load_study_model(published)
    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    _jit_matches_eager(ts, network, images, tmp_path)


def test_publish_without_a_bundle_folder_writes_models_only(tmp_path: Path) -> None:
    source = tmp_path / "run" / "weights.pt"
    source.parent.mkdir()
    torch.save({"state_dict": {}}, source)
    fmt = {"inputs": {}, "outputs": {}}
    target = publish_model(source, tmp_path / "models", "model.pt", {"name": "x"}, fmt, bundle_root=tmp_path)
    assert target.read_bytes() == source.read_bytes()
    assert json.loads((tmp_path / "models" / "metadata.json").read_text()) == {"name": "x", "network_data_format": fmt}
    assert not (tmp_path / "configs").exists()
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        publish_model(tmp_path / "missing.pt", tmp_path / "models", "model.pt", None, fmt)


@pytest.mark.parametrize("name", BUNDLES)
def test_shipped_metadata_verifies_and_large_files_parse(name: str, tmp_path: Path) -> None:
    folder = REPO / "bundles" / name
    metadata = json.loads((folder / "configs" / "metadata.json").read_text())
    assert metadata["name"]
    _verify(folder / "configs" / "metadata.json", tmp_path)
    large = ConfigParser.load_config_file(folder / "large_files.yml")["large_files"]
    paths = {entry["path"] for entry in large}
    assert all(entry["path"].startswith("models/") and entry["url"] for entry in large)
    weights = {"paired_dcgan": "generator.pt", "datasetgan": "interpreter.pt", "synthetic_evaluation": "model.pt"}
    assert f"models/{weights[name]}" in paths
    # every config that reads or writes models/ has the key the model zoo expects
    configs = {p.name: json.loads(p.read_text()) for p in (folder / "configs").glob("*.json")}
    assert "network_def" in configs["inference.json"]
