"""Multi-process GAN training (``monai_synth.engines.distributed``) under a real ``torchrun`` with gloo on CPU.

The bundle overlays are tested in ``tests/bundles/test_multi_gpu.py``; here the trainer itself: two
processes with per-rank batch B end with the weights of one process with batch 2B.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from monai_synth.engines import distributed

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("distributed_worker.py")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _check(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path: Path) -> None:
    # networks without batch norm / minibatch std and no augmentation: one batch of 8 and two batches of 4
    # (gradients averaged) are then the same computation, so the weights must agree to float rounding
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER)]
    _check(subprocess.run([*run, str(tmp_path / "dist.pt"), "4"], env=_env(), capture_output=True, text=True))
    _check(
        subprocess.run(
            [sys.executable, str(WORKER), str(tmp_path / "single.pt"), "8"], env=_env(), capture_output=True, text=True
        )
    )
    dist_run = torch.load(tmp_path / "dist.pt", weights_only=True)
    single = torch.load(tmp_path / "single.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "dist.pt.rank1", weights_only=True)
    sys.path.insert(0, str(WORKER.parent))
    try:
        from distributed_worker import networks
    finally:
        sys.path.remove(str(WORKER.parent))
    initial = dict(zip(("generator", "discriminator"), (n.state_dict() for n in networks())))
    for net in ("generator", "discriminator"):
        for name, value in single[net].items():
            torch.testing.assert_close(dist_run[net][name], value, rtol=0, atol=1e-5)
            assert torch.equal(rank1[net][name], dist_run[net][name]), f"ranks differ in {net}.{name}"
            assert not torch.allclose(value, initial[net][name], atol=1e-4), f"{net}.{name} did not train"
    # logged outputs are global means: the single process's values
    for d, s in zip(dist_run["outputs"], single["outputs"], strict=True):
        assert d.keys() == s.keys()
        for key in s:
            assert abs(d[key] - s[key]) < 1e-5, key


def test_helpers_are_identities_in_a_single_process() -> None:
    net = torch.nn.Linear(2, 1)
    net(torch.ones(1, 2)).sum().backward()
    grad = net.weight.grad.clone()
    distributed.all_reduce_gradients(net)
    assert torch.equal(net.weight.grad, grad)
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_rank_zero()
    assert distributed.all_reduce_mean({"a": 1.5}) == {"a": 1.5}
    assert not distributed.all_finite(torch.tensor([1.0, float("nan")]))
    assert distributed.init_distributed() is False  # no WORLD_SIZE: nothing to join
    handlers = [object(), None, type("H", (), {"every_rank": True})()]
    assert distributed.handlers_for_rank(handlers) == [handlers[0], handlers[2]]
