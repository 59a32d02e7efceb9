"""ignite handlers of StyleGAN2 training: generator EMA and the ADA probability controller."""

from __future__ import annotations

import copy
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["GeneratorEMAHandler", "AdaptiveAugmentHandler", "make_ema_copy"]


def make_ema_copy(generator: torch.nn.Module) -> torch.nn.Module:
    """A frozen, eval-mode deep copy of ``generator`` to hold its exponential moving average."""
    ema = copy.deepcopy(generator).eval()
    ema.requires_grad_(False)
    return ema


class GeneratorEMAHandler:
    """After every iteration, ``ema = beta * ema + (1 - beta) * generator`` (buffers copied).

    ``beta = 0.5 ** (batch_size / ema_nimg)``: the average has a half-life of ``ema_kimg`` thousand
    images, shortened during ramp-up to ``rampup`` times the images seen so far (StyleGAN2-ADA).

    Args:
        generator: the trained generator.
        ema_generator: its copy (see :func:`make_ema_copy`); checkpoint it with the other networks.
        batch_size: images per iteration.
        ema_kimg: half-life in thousands of images (StyleGAN2-ADA: ``batch * 10 / 32``).
        rampup: ramp-up ratio (0.05 in StyleGAN2-ADA; ``None`` disables it).

    Under ``torchrun`` it runs on every rank with the global batch size (identical weights give an
    identical average).
    """

    #: attached on every rank by :func:`~monai_synth.engines.distributed.handlers_for_rank`
    every_rank = True

    def __init__(
        self,
        generator: torch.nn.Module,
        ema_generator: torch.nn.Module,
        batch_size: int,
        ema_kimg: float = 10.0,
        rampup: float | None = 0.05,
    ) -> None:
        if ema_kimg <= 0:
            raise ValueError(f"ema_kimg must be > 0, got {ema_kimg}.")
        self.generator = generator
        self.ema_generator = ema_generator
        self.batch_size = int(batch_size)
        self.ema_kimg = float(ema_kimg)
        self.rampup = rampup

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def beta(self, iteration: int) -> float:
        ema_nimg = self.ema_kimg * 1000
        if self.rampup is not None:
            ema_nimg = min(ema_nimg, iteration * self.batch_size * self.rampup)
        return 0.5 ** (self.batch_size / max(ema_nimg, 1e-8))

    @torch.no_grad()
    def update(self, beta: float) -> None:
        for p_ema, p in zip(self.ema_generator.parameters(), self.generator.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.ema_generator.buffers(), self.generator.buffers()):
            b_ema.copy_(b)

    def __call__(self, engine: Engine) -> None:
        self.update(self.beta(engine.state.iteration))


class AdaptiveAugmentHandler:
    """Tune the augmentation probability ``p`` so that ``r_t = E[sign(D(real))]`` tracks ``target``.

    Every ``interval`` iterations: ``p += sign(r_t - target) * batch_size * interval / (speed_kimg * 1000)``,
    clamped to [0, 1] (StyleGAN2-ADA: target 0.6, interval 4, p can go from 0 to 1 in 500 kimg). ``r_t``
    is averaged over the interval from ``engine.state.output["real_sign"]`` (the trainer's mean sign of
    the discriminator's logits on real images).

    Args:
        augment: the :class:`monai_synth.augment.PairedAugmentPipe` whose ``p`` is tuned.
        batch_size: images per iteration.
        target: target of ``r_t`` (0.6).
        interval: iterations between adjustments (4).
        speed_kimg: thousands of images for ``p`` to go from 0 to 1 (500).
        output_key: key of the real-logit sign mean in the engine output.

    Under ``torchrun`` it runs on every rank with the global batch size; the trainers average
    ``real_sign`` over the ranks, so ``p`` stays identical everywhere.
    """

    #: attached on every rank by :func:`~monai_synth.engines.distributed.handlers_for_rank`
    every_rank = True

    def __init__(
        self,
        augment: Any,
        batch_size: int,
        target: float = 0.6,
        interval: int = 4,
        speed_kimg: float = 500.0,
        output_key: str = "real_sign",
    ) -> None:
        if not 0 <= target <= 1:
            raise ValueError(f"ada_target must be in [0, 1], got {target}.")
        if interval < 1 or speed_kimg <= 0:
            raise ValueError(f"interval must be >= 1 and speed_kimg > 0, got {interval}, {speed_kimg}.")
        self.augment = augment
        self.batch_size = int(batch_size)
        self.target = float(target)
        self.interval = int(interval)
        self.speed_kimg = float(speed_kimg)
        self.output_key = output_key
        self._sum = 0.0
        self._count = 0
        self.last_rt: float | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def observe(self, real_sign: float) -> None:
        self._sum += float(real_sign)
        self._count += 1

    def adjust(self) -> float:
        """Apply the accumulated statistic to ``p``; returns the new ``p``."""
        if self._count == 0:
            return float(self.augment.p)
        self.last_rt = self._sum / self._count
        step = self.batch_size * self.interval / (self.speed_kimg * 1000)
        direction = (self.last_rt > self.target) - (self.last_rt < self.target)
        new_p = min(1.0, max(0.0, float(self.augment.p) + direction * step))
        self.augment.p.fill_(new_p)
        self._sum, self._count = 0.0, 0
        return new_p

    def __call__(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, dict) and self.output_key in output:
            self.observe(output[self.output_key])
        if engine.state.iteration % self.interval == 0:
            self.adjust()

    def state_dict(self) -> dict[str, Any]:
        return {"sum": self._sum, "count": self._count, "last_rt": self.last_rt}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._sum, self._count, self.last_rt = float(state["sum"]), int(state["count"]), state["last_rt"]
