from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset

from monai_synth.engines import NonFiniteLossError, PairedGANTrainer
from monai_synth.handlers import GANCheckpointHandler
from monai_synth.networks.nets import PairedDCGANDiscriminator, PairedDCGANGenerator

SIZE, CHANNELS, LATENT = 16, 3, 8


def _data(n=8, value=None, seed=0):
    rng = np.random.default_rng(seed)
    pair = rng.uniform(-1, 1, (CHANNELS, SIZE, SIZE)).astype(np.float32)
    items = []
    for _ in range(n):
        p = pair.copy() if value is None else np.full_like(pair, value)
        items.append({"pair": p})
    return items


def _trainer(items, max_epochs=1, epoch_length=4, handlers=None, seed=0):
    torch.manual_seed(seed)
    g = PairedDCGANGenerator(SIZE, CHANNELS, LATENT, channels=(16, 8))
    d = PairedDCGANDiscriminator(SIZE, CHANNELS, channels=(8, 16))
    trainer = PairedGANTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=DataLoader(Dataset(items), batch_size=4, shuffle=False),
        g_network=g,
        g_optimizer=torch.optim.Adam(g.parameters(), 4e-4, betas=(0.5, 0.999)),
        d_network=d,
        d_optimizer=torch.optim.Adam(d.parameters(), 4e-4, betas=(0.5, 0.999)),
        latent_dim=LATENT,
        epoch_length=epoch_length,
        train_handlers=handlers,
        seed=seed,
    )
    return trainer, g, d


def _digest(module):
    """Hash of the trainable weights (BN running statistics move with every forward pass)."""
    h = hashlib.sha256()
    for t in module.parameters():
        h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def test_iterations_update_both_networks_and_report_losses():
    trainer, g, d = _trainer(_data(), epoch_length=3)
    g0, d0 = _digest(g), _digest(d)
    trainer.run()
    assert trainer.state.iteration == 3
    out = trainer.state.output
    assert set(out) == {"g_loss", "d_loss", "d_real", "d_fake"}
    assert all(np.isfinite(v) for v in out.values())
    assert 0.0 <= out["d_real"] <= 1.0 and 0.0 <= out["d_fake"] <= 1.0
    assert _digest(g) != g0 and _digest(d) != d0


def test_epoch_length_longer_than_loader_restarts_the_data():
    trainer, _, _ = _trainer(_data(n=4), max_epochs=2, epoch_length=3)  # loader has 1 batch
    trainer.run()
    assert trainer.state.iteration == 6


def test_latents_are_uniform_in_range():
    trainer, _, _ = _trainer(_data())
    trainer.state.device = torch.device("cpu")
    z = trainer.sample_latents(2000)
    assert z.shape == (2000, LATENT)
    assert z.min() >= -1 and z.max() <= 1 and abs(z.mean().item()) < 0.05


def test_nan_loss_stops_before_updating_weights_and_keeps_checkpoint(tmp_path):
    items = _data(n=4)
    bad = _data(n=4, value=float("nan"))
    trainer, g, d = _trainer(items + bad, epoch_length=2)
    handler = GANCheckpointHandler(tmp_path, {"generator": g, "discriminator": d}, save_interval=1, resume=False)
    handler.attach(trainer)
    weights = {}

    @trainer.on(Events.ITERATION_COMPLETED)
    def remember(engine):
        weights["g"], weights["d"] = _digest(g), _digest(d)

    with pytest.raises(NonFiniteLossError, match="iteration 2"):
        trainer.run()
    # the failing iteration changed nothing, and the checkpoint of iteration 1 is intact
    assert _digest(g) == weights["g"] and _digest(d) == weights["d"]
    saved = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert saved["iteration"] == 1
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_resume_after_interruption_continues_exactly(tmp_path):
    items = _data(n=4)
    reference, g_ref, _ = _trainer(items, max_epochs=2, epoch_length=3)
    reference.run()

    class Interrupt(RuntimeError):
        pass

    first, g1, d1 = _trainer(items, max_epochs=2, epoch_length=3)
    opt = {"generator": g1, "discriminator": d1, "g_optimizer": first.g_optimizer, "d_optimizer": first.d_optimizer}
    GANCheckpointHandler(tmp_path, opt, config={"a": 1}, save_interval=3).attach(first)

    @first.on(Events.ITERATION_COMPLETED(once=4))
    def kill(engine):
        raise Interrupt("killed")

    with pytest.raises(Interrupt):
        first.run()
    assert torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)["iteration"] == 3

    second, g2, d2 = _trainer(items, max_epochs=2, epoch_length=3, seed=123)  # other init and seed: all restored
    opt = {"generator": g2, "discriminator": d2, "g_optimizer": second.g_optimizer, "d_optimizer": second.d_optimizer}
    handler = GANCheckpointHandler(tmp_path, opt, config={"a": 1}, save_interval=3)
    handler.attach(second)
    second.run()
    assert handler.resumed_from == 3
    assert second.state.iteration == 6
    for a, b in zip(g_ref.state_dict().values(), g2.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="latent_distribution"):
        PairedGANTrainer(
            "cpu", 1, [], torch.nn.Linear(1, 1), None, torch.nn.Linear(1, 1), None, 4, latent_distribution="cauchy"
        )
    trainer, _, _ = _trainer([{"image": np.zeros((CHANNELS, SIZE, SIZE), np.float32)}] * 4)
    with pytest.raises(ValueError, match="'pair'"):
        trainer.run()
