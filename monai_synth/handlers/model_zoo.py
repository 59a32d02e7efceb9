"""Publish a run's trained generator to the bundle's ``models/`` folder when training completes (model-zoo layout)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from monai_synth.utils.model_zoo import publish_generator

__all__ = ["ModelZooPublisher"]


class ModelZooPublisher:
    """Ignite handler: when training completes, publish the exported ``generator.pt`` to ``models_dir``.

    Attach it after the handlers that write the export (handlers fire in the order they were attached),
    so the published file is the final one (the EMA generator, or the best snapshot with ``select_by``).

    Args:
        source: the export written by the run (``<output_dir>/generator.pt``).
        models_dir: the bundle's ``models/`` folder; ``None`` or ``""`` switches publishing off.
        metadata: the bundle's metadata (``@_meta_``).
        bundle_root: see :func:`~monai_synth.utils.model_zoo.publish_model`.
    """

    def __init__(
        self,
        source: str | Path,
        models_dir: str | Path | None,
        metadata: Mapping[str, Any] | None = None,
        bundle_root: str | Path | None = None,
    ) -> None:
        self.source, self.models_dir = Path(source), models_dir
        self.metadata, self.bundle_root = metadata, bundle_root

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> Path | None:
        return publish_generator(self.source, self.models_dir, self.metadata, self.bundle_root)
