"""Console progress and a JSON summary of a training run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

from monai_synth.utils.environment import environment_info
from monai_synth.utils.io import write_json_atomic

__all__ = ["LossProgressBar", "TrainingSummaryWriter"]


class LossProgressBar:
    """ignite ``ProgressBar`` showing the chosen loss values, attachable from a MONAI bundle list.

    MONAI workflows call ``handler.attach(engine)`` with no other argument; ignite's progress bar
    needs ``output_transform`` at attach time to show losses, which this wrapper supplies.

    Args:
        keys: keys of ``engine.state.output`` to show (e.g. ``["g_loss", "d_loss"]``).
        persist: keep the bar after each epoch.
    """

    def __init__(self, keys: Sequence[str] = ("g_loss", "d_loss"), persist: bool = False) -> None:
        self.keys = list(keys)
        self.bar = ProgressBar(persist=persist)

    def attach(self, engine: Engine) -> None:
        self.bar.attach(engine, output_transform=lambda out: {k: out[k] for k in self.keys if k in out})


class TrainingSummaryWriter:
    """At the end of training, write ``summary.json``: iterations, wall time, images/s, versions, hardware, extras.

    Under ``torchrun`` only rank 0 attaches it; images/s count the global batch (``batch_size`` times the
    trainer's ``world_size``).

    Args:
        path: JSON file to write (atomically).
        batch_size: images per iteration of one process (for images/s).
        extra: anything JSON-like to store alongside (data summary, configuration).
    """

    def __init__(self, path: str | Path, batch_size: int, extra: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.batch_size = int(batch_size)
        self.extra = extra or {}
        self._start = 0.0
        self._start_iteration = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self._start = time.perf_counter()
        self._start_iteration = engine.state.iteration

    def _completed(self, engine: Engine) -> None:
        seconds = time.perf_counter() - self._start
        iterations = engine.state.iteration - self._start_iteration
        last = engine.state.output if isinstance(engine.state.output, dict) else {}
        processes = int(getattr(engine, "world_size", 1))
        images = iterations * self.batch_size * processes
        write_json_atomic(
            self.path,
            {
                "iterations_total": engine.state.iteration,
                "iterations_this_run": iterations,
                "seconds_this_run": round(seconds, 3),
                "images_per_second": round(images / seconds, 3) if seconds > 0 else None,
                "batch_size_per_process": self.batch_size,
                "processes": processes,
                "last_output": last,
                "device": str(engine.state.device) if hasattr(engine.state, "device") else None,
                **environment_info(getattr(engine.state, "device", None)),
                **self.extra,
            },
        )
