"""StyleGAN2Trainer: phases, lazy regularisation, ADA/EMA handlers, exact resume, NaN handling."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset

from monai_synth.augment import PairedAugmentPipe
from monai_synth.engines import NonFiniteLossError, StyleGAN2Trainer, lazy_regularization_optimizer_kwargs
from monai_synth.handlers import AdaptiveAugmentHandler, GANCheckpointHandler, GeneratorEMAHandler, make_ema_copy
from monai_synth.networks.nets import StyleGAN2Discriminator, StyleGAN2Generator

SIZE = 8


def _data(n=8, value=None):
    rng = np.random.default_rng(0)
    items = []
    for _ in range(n):
        image = rng.uniform(-1, 1, (1, SIZE, SIZE)).astype(np.float32)
        pair = np.concatenate([image, np.where(image > 0, 1.0, -1.0).astype(np.float32)])
        items.append({"pair": pair if value is None else np.full_like(pair, value)})
    return items


def _setup(items, max_epochs=1, epoch_length=4, mode="paired", seed=0, handlers_first=()):
    torch.manual_seed(seed)
    kw = {"image_channels": 1, "mask_channels": 1, "mode": mode, "channel_base": 64, "channel_max": 8}
    g = StyleGAN2Generator(SIZE, z_dim=8, w_dim=8, mapping_layers=2, **kw)
    d = StyleGAN2Discriminator(SIZE, **kw)
    ema = make_ema_copy(g)
    aug = PairedAugmentPipe(image_channels=1 if mode != "mask" else 0, p=0.2)
    g_opt = torch.optim.Adam(g.parameters(), **lazy_regularization_optimizer_kwargs(2e-3, (0, 0.99), 2))
    d_opt = torch.optim.Adam(d.parameters(), **lazy_regularization_optimizer_kwargs(2e-3, (0, 0.99), 2))
    ada = AdaptiveAugmentHandler(aug, batch_size=4, interval=2, speed_kimg=0.1)
    handlers = [GeneratorEMAHandler(g, ema, batch_size=4, ema_kimg=0.01), ada]
    channels = {"image": (0, 1), "paired": (0, 2), "mask": (1, 2), "conditional": (0, 2)}[mode]
    trainer = StyleGAN2Trainer(
        "cpu",
        max_epochs,
        DataLoader(Dataset(items), batch_size=4, shuffle=False),
        g,
        g_opt,
        d,
        d_opt,
        epoch_length=epoch_length,
        channels=channels,
        augment=aug,
        r1_gamma=1.0,
        r1_interval=2,
        pl_interval=2,
        train_handlers=handlers,
        seed=seed,
    )
    objects = {"generator": g, "discriminator": d, "generator_ema": ema, "augment": aug, "ada": ada}
    objects.update(g_optimizer=g_opt, d_optimizer=d_opt)
    return trainer, objects


def _digest(module):
    h = hashlib.sha256()
    for t in module.parameters():
        h.update(t.detach().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("mode", ["paired", "image", "mask", "conditional"])
def test_training_updates_networks_regularises_and_reports(mode):
    trainer, o = _setup(_data(), mode=mode)
    g0, d0, e0 = _digest(o["generator"]), _digest(o["discriminator"]), _digest(o["generator_ema"])
    trainer.run()
    out = trainer.state.output
    assert set(out) == {"g_loss", "d_loss", "r1", "pl", "d_real", "d_fake", "real_sign", "ada_p"}
    assert all(np.isfinite(v) for v in out.values())
    assert out["r1"] > 0 and out["pl"] > 0  # both lazy regularisers ran (interval 2, 4 iterations)
    assert float(trainer.pl_penalty.mean) > 0
    assert -1 <= out["real_sign"] <= 1 and 0 <= out["ada_p"] <= 1  # p used in the last iteration
    assert o["ada"].last_rt is not None  # the ADA handler adjusted p from the reported signs
    assert _digest(o["generator"]) != g0 and _digest(o["discriminator"]) != d0 and _digest(o["generator_ema"]) != e0


def test_conditional_fakes_are_drawn_for_the_real_masks_and_r1_is_on_the_image(monkeypatch):
    import monai_synth.engines.stylegan2_trainer as module

    trainer, o = _setup(_data(), mode="conditional", epoch_length=2)
    trainer.augment = None  # so the discriminator's inputs can be compared with the batch
    seen = []
    o["discriminator"].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    r1_inputs, r1_penalty = [], module.r1_penalty

    def spy(logits, inputs, gamma):
        r1_inputs.append(tuple(inputs.shape))
        return r1_penalty(logits, inputs, gamma)

    monkeypatch.setattr(module, "r1_penalty", spy)
    trainer.run()
    reals = torch.stack([torch.as_tensor(item["pair"]) for item in _data()])
    masks = {tuple(m.flatten().tolist()) for m in reals[:, 1:]}
    assert all(x.shape[1] == 2 for x in seen)
    assert all(tuple(m.flatten().tolist()) in masks for x in seen for m in x[:, 1:])  # fakes carry real masks
    assert r1_inputs == [(4, 1, SIZE, SIZE)]  # iteration 2: R1 with respect to the image channel only
    assert trainer.last_r1 > 0


def test_lazy_regularisation_optimizer_correction():
    kw = lazy_regularization_optimizer_kwargs(0.0025, (0.0, 0.99), 16)
    c = 16 / 17
    assert kw["lr"] == pytest.approx(0.0025 * c) and kw["betas"] == pytest.approx((0.0, 0.99**c))
    assert lazy_regularization_optimizer_kwargs(0.1, (0.5, 0.9), 0) == {"lr": 0.1, "betas": (0.5, 0.9)}


def test_resume_continues_exactly(tmp_path):
    # an epoch is one pass over the loader (2 batches): ignite restarts the data iterator at each epoch,
    # so a resumed run sees the same batches as an uninterrupted one
    items = _data()
    reference, ref = _setup(items, max_epochs=3, epoch_length=2)
    reference.run()

    class Interrupt(RuntimeError):
        pass

    first, o1 = _setup(items, max_epochs=3, epoch_length=2)
    GANCheckpointHandler(tmp_path, dict(o1), config={"mode": "paired"}, save_interval=2).attach(first)

    @first.on(Events.ITERATION_COMPLETED(once=3))
    def kill(engine):
        raise Interrupt("killed")

    with pytest.raises(Interrupt):
        first.run()

    second, o2 = _setup(items, max_epochs=3, epoch_length=2, seed=99)  # other init and seeds: all restored
    handler = GANCheckpointHandler(tmp_path, dict(o2), config={"mode": "paired"}, save_interval=2)
    handler.attach(second)
    second.run()
    assert handler.resumed_from == 2 and second.state.iteration == 6
    for name in ("generator", "discriminator", "generator_ema"):
        for a, b in zip(ref[name].state_dict().values(), o2[name].state_dict().values()):
            torch.testing.assert_close(a, b)
    assert float(o2["augment"].p) == pytest.approx(float(ref["augment"].p))
    assert float(second.pl_penalty.mean) == pytest.approx(float(reference.pl_penalty.mean))


def test_nan_stops_before_any_update_and_keeps_checkpoint(tmp_path):
    trainer, o = _setup(_data(4) + _data(4, value=float("nan")), epoch_length=2)
    GANCheckpointHandler(tmp_path, dict(o), save_interval=1, resume=False).attach(trainer)
    seen = {}

    @trainer.on(Events.ITERATION_COMPLETED)
    def remember(engine):
        seen["d"] = _digest(o["discriminator"])

    with pytest.raises(NonFiniteLossError, match="iteration 2"):
        trainer.run()
    assert _digest(o["discriminator"]) == seen["d"]
    assert torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)["iteration"] == 1


def test_bad_arguments_and_batches():
    trainer, _ = _setup([{"image": np.zeros((2, SIZE, SIZE), np.float32)}] * 4)
    with pytest.raises(ValueError, match="'pair'"):
        trainer.run()
    with pytest.raises(ValueError, match="r1_gamma"):
        StyleGAN2Trainer("cpu", 1, [], torch.nn.Linear(1, 1), None, torch.nn.Linear(1, 1), None, r1_gamma=-1)
    with pytest.raises(ValueError, match="style_mixing_prob"):
        StyleGAN2Trainer("cpu", 1, [], torch.nn.Linear(1, 1), None, torch.nn.Linear(1, 1), None, style_mixing_prob=2)
