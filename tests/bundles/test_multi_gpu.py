"""The ``configs/multi_gpu_train.json`` overlays, run the way the READMEs say: ``torchrun --standalone
--nproc_per_node=2 -m monai.bundle run --config_file "['configs/train.json','configs/multi_gpu_train.json']"``
(gloo on CPU, tiny sizes).

A test-only third config file (``dump.json`` below) adds a ``finalize`` step that saves each rank's
generator, discriminator, EMA generator, iteration and ADA ``p``, so the ranks can be compared. Each
torchrun start costs two interpreter start-ups with MONAI imports (20-60 s on the shared 2-core
machine), hence ``slow``; the fast suite keeps the 2-process trainer test in
``tests/engines/test_distributed.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bundle_helpers import REPO
from bundle_helpers import bundle as _bundle
from bundle_helpers import failed_with as _failed_with

DCGAN = REPO / "bundles" / "paired_dcgan" / "configs"
STYLEGAN = REPO / "bundles" / "datasetgan" / "configs"

DCGAN_TINY = [
    "--image_size", "32", "--latent_dim", "8", "--generator_channels", "[16, 8]",
    "--discriminator_channels", "[8, 16]", "--batch_size", "2", "--phantom_samples", "8",
    "--max_epochs", "2", "--iterations_per_epoch", "2", "--sample_interval", "2", "--checkpoint_interval", "2",
    "--log_interval", "1", "--num_grid_samples", "4", "--device", "cpu",
]  # fmt: skip
# 8 phantoms, 2 per rank x 2 ranks: 16 images = 4 iterations; ADA starts at p = 0.5 and moves every iteration
STYLEGAN_TINY = [
    "--image_size", "16", "--z_dim", "16", "--w_dim", "16", "--mapping_layers", "1", "--channel_base", "64",
    "--channel_max", "16", "--batch_size", "2", "--phantom_samples", "8", "--kimg", "0.016",
    "--r1_interval", "2", "--pl_weight", "2", "--pl_interval", "2", "--ada_interval", "1", "--ada_kimg", "0.1", "--augment_p", "0.5",
    "--sample_interval", "2", "--checkpoint_interval", "2", "--log_interval", "1", "--num_grid_samples", "4",
    "--device", "cpu",
]  # fmt: skip
NETWORKS = ("generator", "discriminator", "generator_ema")


def _dump_config(tmp_path: Path, dump_dir: Path, output_dir: str | None = None) -> Path:
    """A third config file: every rank saves its networks in ``finalize``; optionally a per-rank ``output_dir``."""
    rank = "str(monai_synth.engines.distributed.rank())"
    state = ", ".join(f"'{n}': @{n}.state_dict()" for n in NETWORKS)
    config: dict = {
        "finalize": [
            f"$torch.save({{{state}, 'iteration': @trainer.state.iteration, 'augment_p': float(@augment.p)}}, "
            f"'{dump_dir}/rank' + {rank} + '.pt')",
            "$monai_synth.engines.distributed.destroy_distributed()",
        ]
    }
    if output_dir is not None:
        config["output_dir"] = f"$'{output_dir}' + {rank}"
    path = tmp_path / f"dump_{len(list(tmp_path.glob('dump_*.json')))}.json"
    path.write_text(json.dumps(config))
    return path


def torchrun(configs: list[Path], *overrides: str, cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=nproc -m monai.bundle run --config_file [...] overrides``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command += ["-m", "monai.bundle", "run", "--config_file", files, *overrides]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _ok(done: subprocess.CompletedProcess) -> str:
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    return out


def _ranks(dump_dir: Path) -> list[dict]:
    return [torch.load(dump_dir / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _assert_identical(ranks: list[dict]) -> None:
    for net in NETWORKS:
        for name, value in ranks[0][net].items():
            assert torch.equal(value, ranks[1][net][name]), f"ranks differ in {net}.{name}"
    assert ranks[0]["augment_p"] == ranks[1]["augment_p"]
    assert ranks[0]["iteration"] == ranks[1]["iteration"]


@pytest.mark.slow
def test_paired_dcgan_two_ranks_stay_identical_and_only_rank_zero_writes(tmp_path: Path) -> None:
    # each rank gets its own output_dir here, so whatever rank 1 wrote would show up in out1
    dump = tmp_path / "dump"
    dump.mkdir()
    out = tmp_path / "out"
    configs = [DCGAN / "train.json", DCGAN / "multi_gpu_train.json", _dump_config(tmp_path, dump, str(out))]
    _ok(torchrun(configs, *DCGAN_TINY, "--mlflow_tracking_uri", f"sqlite:///{tmp_path}/mlflow.db", cwd=tmp_path))
    ranks = _ranks(dump)
    _assert_identical(ranks)
    assert ranks[0]["iteration"] == 4
    assert not (tmp_path / "out1").exists(), sorted(str(p) for p in (tmp_path / "out1").rglob("*"))
    rank0 = tmp_path / "out0"
    for name in ("checkpoints/checkpoint_last.pt", "generator.pt", "summary.json", "samples/latest.png"):
        assert (rank0 / name).is_file(), name
    checkpoint = torch.load(rank0 / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["states"]["trainer"]["world_size"] == 2 and checkpoint["states"]["trainer"]["batch_size"] == 2
    assert len(checkpoint["rng_states"]) == 2 and not torch.equal(*checkpoint["rng_states"])
    summary = json.loads((rank0 / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["batch_size_per_process"] == 2
    assert (tmp_path / "mlflow.db").is_file()  # MLflow logged (by rank 0: rank 1 has no MLflow handler)


@pytest.mark.slow
def test_paired_dcgan_resume_under_torchrun_continues_on_every_rank(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    configs = [DCGAN / "train.json", DCGAN / "multi_gpu_train.json", _dump_config(tmp_path, dump)]
    common = [*DCGAN_TINY, "--output_dir", str(tmp_path / "run")]
    _ok(torchrun(configs, *common, cwd=tmp_path))
    first = _ranks(dump)
    out = _ok(torchrun(configs, *common[:-2], "--max_epochs", "3", "--output_dir", str(tmp_path / "run"), cwd=tmp_path))
    assert out.count("Resumed from") == 2, out[-3000:]  # both ranks
    resumed = _ranks(dump)
    _assert_identical(resumed)
    assert first[0]["iteration"] == 4 and resumed[0]["iteration"] == 6
    assert any(not torch.equal(v, resumed[0]["generator"][k]) for k, v in first[0]["generator"].items())
    # a single process cannot continue a 2-process run: the global batch would change
    _failed_with(
        _bundle(
            [
                "run",
                "--config_file",
                str(DCGAN / "train.json"),
                *common[:-2],
                "--max_epochs",
                "4",
                "--output_dir",
                str(tmp_path / "run"),
            ],
            cwd=tmp_path,
        ),  # fmt: skip
        "2 process(es)",
        "--nproc_per_node=2",
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["image", "paired", "mask"])
def test_stylegan2_two_ranks_keep_identical_weights_ema_and_ada(tmp_path: Path, mode: str) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    configs = [STYLEGAN / "train.json", STYLEGAN / "multi_gpu_train.json", _dump_config(tmp_path, dump)]
    _ok(torchrun(configs, *STYLEGAN_TINY, "--mode", mode, "--output_dir", str(tmp_path / "run"), cwd=tmp_path))
    ranks = _ranks(dump)
    _assert_identical(ranks)  # augmentation and noise differ per rank: only synchronised gradients keep this
    assert ranks[0]["iteration"] == 4
    assert ranks[0]["augment_p"] != 0.5  # ADA moved p, identically on both ranks
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["states"]["trainer"]["world_size"] == 2
    exported = torch.load(tmp_path / "run" / "generator.pt", weights_only=True)
    for key, value in exported["state_dict"].items():
        assert torch.equal(value, ranks[0]["generator_ema"][key]), key


@pytest.mark.slow
def test_generate_under_torchrun_splits_shards_and_equals_a_single_process_set(tmp_path: Path) -> None:
    run = tmp_path / "run"
    tiny = [a if a != "2" or i != DCGAN_TINY.index("--max_epochs") + 1 else "1" for i, a in enumerate(DCGAN_TINY)]
    done = _bundle(["run", "--config_file", str(DCGAN / "train.json"), *tiny, "--output_dir", str(run)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # 9 pairs in shards of 2 (the last one short), batch 2: 5 shards over 2 ranks
    common = ["--output_dir", str(run), "--num_samples", "9", "--shard_size", "2", "--batch_size", "2"]
    common += ["--device", "cpu", "--allow_duplicates", "True", "--dedup_max_distance", "110"]
    out = _ok(torchrun([DCGAN / "generate.json"], *common, "--generated_dir", str(tmp_path / "dist"), cwd=tmp_path))
    assert "Rank 0 of 2 drew shards [0, 2, 4]" in out and "Rank 1 of 2 drew shards [1, 3]" in out, out[-3000:]
    done = _bundle(["run", "--config_file", str(DCGAN / "generate.json"), *common, "--generated_dir",
                    str(tmp_path / "single")], cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("dist", "single")]
    assert [e["index"] for e in manifests[0]["pairs"]] == list(range(9))
    assert manifests[0]["pairs"] == manifests[1]["pairs"]  # same decisions, same files, same order
    kept = [e["kept"] for e in manifests[0]["pairs"]]
    assert any(kept) and not all(kept), [e.get("hash_distance") for e in manifests[0]["pairs"]]  # both paths ran
    datalists = [json.loads((tmp_path / d / "datalist.json").read_text()) for d in ("dist", "single")]
    assert datalists[0]["training"] == datalists[1]["training"]
    files = sorted(p.name for p in (tmp_path / "dist" / "pairs").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "single" / "pairs").iterdir())
    for name in files:
        assert (tmp_path / "dist" / "pairs" / name).read_bytes() == (tmp_path / "single" / "pairs" / name).read_bytes()
    assert not list((tmp_path / "dist" / "shards").glob("*.draft.json"))


@pytest.mark.slow
def test_study_overlay_trains_with_two_ranks_and_only_rank_zero_writes(tmp_path: Path) -> None:
    configs = REPO / "bundles" / "synthetic_evaluation" / "configs"
    per_rank = tmp_path / "per_rank.json"  # rank r writes under out<r>: rank 1 must leave its folder empty
    per_rank.write_text(json.dumps({"output_dir": f"$'{tmp_path}/out' + str(monai_synth.engines.distributed.rank())"}))
    overrides = [
        "--arms", "['real','synthetic']", "--num_synthetic", "[4]", "--max_epochs", "1", "--image_size", "32",
        "--phantom_samples", "10", "--phantom_generated_samples", "10", "--compute_fid", "False", "--device", "cpu",
        "--batch_size", "2",
    ]  # fmt: skip
    _ok(torchrun([configs / "evaluate.json", configs / "multi_gpu_evaluate.json", per_rank], *overrides, cwd=tmp_path))
    results = json.loads((tmp_path / "out0" / "results.json").read_text())
    assert len(results["arms"]) == 2
    for arm in results["arms"]:
        assert (tmp_path / "out0" / arm["folds"][0]["model"]).is_file()
    assert not [p for p in (tmp_path / "out1").rglob("*") if p.is_file()]
