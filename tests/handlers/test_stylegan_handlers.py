"""ADA probability controller and generator EMA, driven through real ignite engines."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from monai_synth.augment import PairedAugmentPipe
from monai_synth.handlers import AdaptiveAugmentHandler, GeneratorEMAHandler, make_ema_copy


def _run(real_signs, augment, **kw):
    engine = Engine(lambda e, batch: {"real_sign": batch})
    handler = AdaptiveAugmentHandler(augment, **kw)
    handler.attach(engine)
    history = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: history.append(float(augment.p)))
    engine.run(real_signs, max_epochs=1)
    return history, handler


def test_ada_p_rises_when_discriminator_overfits_and_falls_otherwise():
    aug = PairedAugmentPipe(1, p=0.0)
    step = 64 * 4 / (10.0 * 1000)  # batch * interval / (speed_kimg * 1000)
    history, handler = _run([0.9] * 40, aug, batch_size=64, interval=4, speed_kimg=10.0)
    assert history[3] == pytest.approx(step) and history[2] == 0.0  # adjusted every 4 iterations
    assert history[-1] == pytest.approx(10 * step)
    assert handler.last_rt == pytest.approx(0.9)
    history, _ = _run([0.2] * 8, aug, batch_size=64, interval=4, speed_kimg=10.0)
    assert history[-1] == pytest.approx(8 * step, rel=1e-5)  # fell by two steps


def test_ada_p_clamped_to_unit_interval():
    aug = PairedAugmentPipe(1, p=0.0)
    history, _ = _run([-1.0] * 8, aug, batch_size=64, interval=1, speed_kimg=1.0)
    assert max(history) == 0.0
    history, _ = _run([1.0] * 40, aug, batch_size=256, interval=1, speed_kimg=1.0)
    assert history[-1] == 1.0


def test_ada_state_round_trip_and_bad_settings():
    handler = AdaptiveAugmentHandler(PairedAugmentPipe(1), batch_size=4)
    handler.observe(0.5)
    other = AdaptiveAugmentHandler(PairedAugmentPipe(1), batch_size=4)
    other.load_state_dict(handler.state_dict())
    assert other.state_dict() == handler.state_dict()
    with pytest.raises(ValueError, match="ada_target"):
        AdaptiveAugmentHandler(PairedAugmentPipe(1), batch_size=4, target=1.5)


def test_ema_follows_the_half_life_formula():
    torch.manual_seed(0)
    g = torch.nn.Linear(3, 2)
    g.register_buffer("counter", torch.zeros(1))
    ema = make_ema_copy(g)
    assert not any(p.requires_grad for p in ema.parameters())
    handler = GeneratorEMAHandler(g, ema, batch_size=4, ema_kimg=0.01, rampup=None)
    assert handler.beta(10) == pytest.approx(0.5 ** (4 / 10))
    start = ema.weight.clone()
    with torch.no_grad():
        g.weight.add_(1.0)
        g.counter.fill_(7)
    handler.update(handler.beta(1))
    torch.testing.assert_close(ema.weight, g.weight.lerp(start, 0.5**0.4))
    assert ema.counter.item() == 7  # buffers are copied
    ramped = GeneratorEMAHandler(g, ema, batch_size=4, ema_kimg=10, rampup=0.05)
    assert ramped.beta(1) < 1e-5 < ramped.beta(100000)  # short memory at the start of training
