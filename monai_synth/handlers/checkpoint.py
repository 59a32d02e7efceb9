"""Atomic, configuration-checked checkpoints with resume for GAN training."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_synth.engines import distributed
from monai_synth.utils.export import export_generator, load_checkpoint
from monai_synth.utils.io import remove_stale_temp_files, torch_save_atomic

__all__ = ["GANCheckpointHandler", "load_checkpoint", "config_differences"]

logger = logging.getLogger(__name__)


def config_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """List ``"key: saved != current"`` for every leaf that differs between two nested configs."""
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        out: list[str] = []
        for key in sorted(set(saved) | set(current), key=str):
            name = f"{prefix}{key}"
            if key not in saved:
                out.append(f"{name}: missing in checkpoint, now {current[key]!r}")
            elif key not in current:
                out.append(f"{name}: {saved[key]!r} in checkpoint, missing now")
            else:
                out += config_differences(saved[key], current[key], f"{name}.")
        return out
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)):
        saved, current = list(saved), list(current)
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} in checkpoint, {current!r} now"]


def _optimizer_settings(save_dict: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{name: [group settings without params]}`` of every optimiser in ``save_dict``, as built for this run."""
    settings = {}
    for name, obj in save_dict.items():
        if isinstance(obj, torch.optim.Optimizer):
            # with a scheduler ``lr`` is the scheduled value and ``initial_lr`` the setting
            skip = {"params", "lr"} if any("initial_lr" in g for g in obj.param_groups) else {"params"}
            settings[name] = [{k: v for k, v in g.items() if k not in skip} for g in obj.param_groups]
    return settings


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return list(value) if isinstance(value, tuple) else value


def _same_setting(a: Any, b: Any) -> bool:
    return _plain(a) == _plain(b)


class GANCheckpointHandler:
    """Save and resume every stateful training object, refusing checkpoints of another configuration.

    MONAI's ``CheckpointSaver``/``CheckpointLoader`` write non-atomically (a killed run can leave a
    truncated file as the only checkpoint) and cannot tell that a checkpoint was made with another
    network configuration until ``load_state_dict`` fails with a shape error. This handler writes
    ``checkpoint_last.pt`` atomically every ``save_interval`` iterations and at the end, stores the
    ``config`` beside the states, and on start resumes from it when ``resume`` is set, after checking
    that the stored config equals the current one. Optimiser settings (``lr``, ``betas``, ``eps``,
    ``weight_decay``, ...) of the current run win over the restored ones: a changed value is applied
    after loading and logged as a warning (:attr:`applied_optimizer_changes`); the moments are kept.
    A trainer that refuses its state (another batch size) stops the resume with an error naming the file. It never saves when an exception (e.g. a NaN loss)
    ends the run, so the last good checkpoint survives.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: ``{name: object with state_dict/load_state_dict}`` (networks, optimisers); the engine
            the handler is attached to is added as ``"trainer"`` so the iteration count resumes too.
            ``None`` values are dropped (objects a bundle switched off, e.g. the EMA copy with ``ema`` false).
        config: JSON-like description of the run (network configs, data channels, image size) stored
            and compared on resume.
        save_interval: iterations between saves (0: only at the end).
        resume: resume from ``save_dir/filename`` when it exists.
        filename: checkpoint file name.
        export: optional ``{"path": file, "network": module}``: also write that network's weights and
            ``config`` alone (for inference) at every save, through
            :func:`~monai_synth.utils.export.export_generator`.
        keep_history: also keep ``checkpoint_iter_XXXXXXX.pt`` copies.

    Under ``torchrun`` (:mod:`monai_synth.engines.distributed`) the handler is attached on every rank:
    every rank resumes from the same file, only rank 0 writes it (and the export). The global RNG
    states of all ranks are gathered into the checkpoint (``rng_states``), so each rank resumes its own
    augmentation/noise stream.
    """

    #: attached on every rank by :func:`~monai_synth.engines.distributed.handlers_for_rank`
    every_rank = True

    def __init__(
        self,
        save_dir: str | Path,
        save_dict: dict[str, Any],
        config: dict[str, Any] | None = None,
        save_interval: int = 200,
        resume: bool = True,
        filename: str = "checkpoint_last.pt",
        export: dict[str, Any] | None = None,
        keep_history: bool = False,
    ) -> None:
        save_dict = {name: obj for name, obj in (save_dict or {}).items() if obj is not None}
        if not save_dict:
            raise ValueError("save_dict must name at least one object to checkpoint.")
        self.save_dir = Path(save_dir)
        self.save_dict = save_dict
        self.config = config or {}
        self.save_interval = int(save_interval)
        self.resume = bool(resume)
        self.path = self.save_dir / filename
        self.export = export
        self.keep_history = keep_history
        self.resumed_from: int | None = None
        self.applied_optimizer_changes: list[str] = []

    def attach(self, engine: Engine) -> None:
        # the engine itself is checkpointed too (iteration count); added here because a bundle config
        # cannot reference the trainer from inside the trainer's own handler list
        self.save_dict.setdefault("trainer", engine)
        engine.add_event_handler(Events.STARTED, self.load)
        if self.save_interval > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def state(self, engine: Engine) -> dict[str, Any]:
        states = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        return {
            "states": states,
            "config": self.config,
            "iteration": engine.state.iteration,
            "rng_state": torch.get_rng_state(),
        }

    def save(self, engine: Engine) -> None:
        checkpoint = self.state(engine)
        if distributed.is_distributed():
            # collective: every rank calls save at the same iterations; rank 0 alone writes
            states: list[Any] = [None] * distributed.world_size()
            torch.distributed.all_gather_object(states, checkpoint["rng_state"])
            checkpoint["rng_states"] = states
            if not distributed.is_rank_zero():
                return
        torch_save_atomic(checkpoint, self.path)
        if self.keep_history:
            torch_save_atomic(checkpoint, self.save_dir / f"checkpoint_iter_{engine.state.iteration:07d}.pt")
        if self.export:
            export_generator(self.export["network"], self.config, self.export["path"], iteration=engine.state.iteration)

    def _apply_optimizer_settings(self, settings: dict[str, list[dict[str, Any]]]) -> None:
        """Put the optimiser settings of this run back over those the checkpoint restored, and say so."""
        changes = []
        for name, groups in settings.items():
            for index, (group, wanted) in enumerate(zip(self.save_dict[name].param_groups, groups)):
                for key, value in wanted.items():
                    if key in group and not _same_setting(group[key], value):
                        where = name if len(groups) == 1 else f"{name} group {index}"
                        changes.append(f"{where} {key} {_plain(group[key])!r} -> {_plain(value)!r}")
                        group[key] = value
        if changes:
            logger.warning(
                "Resuming from %s with changed optimiser settings; the new values replace the checkpoint's: %s.",
                self.path,
                "; ".join(changes),
            )
        self.applied_optimizer_changes = changes

    def load(self, engine: Engine) -> None:
        # a run killed while writing left a hidden temporary file the size of a checkpoint
        if distributed.is_rank_zero():
            remove_stale_temp_files(self.path)
            if self.export:
                remove_stale_temp_files(self.export["path"])
        if not self.path.is_file():
            return
        if not self.resume:
            raise FileExistsError(
                f"{self.path} already holds a training run and resume is false: refusing to overwrite it. "
                "Set resume to true to continue it, or choose another output folder."
            )
        checkpoint = load_checkpoint(self.path)
        differences = config_differences(checkpoint.get("config", {}), self.config)
        if differences:
            raise ValueError(
                f"Cannot resume from {self.path}: it was made with another configuration ("
                + "; ".join(differences[:8])
                + "). Use another output folder for the new configuration."
            )
        missing = [name for name in self.save_dict if name not in checkpoint["states"]]
        if missing:
            raise ValueError(f"Checkpoint {self.path} has no state for {missing}.")
        prior_max_epochs = engine.state.max_epochs
        optimizer_settings = _optimizer_settings(self.save_dict)
        # the trainer first: it refuses a checkpoint of another batch size before anything else changes
        for name in sorted(self.save_dict, key=lambda n: n != "trainer"):
            try:
                self.save_dict[name].load_state_dict(checkpoint["states"][name])
            except ValueError as e:
                raise ValueError(f"Cannot resume from {self.path}: {e}") from e
        self._apply_optimizer_settings(optimizer_settings)
        if "trainer" in self.save_dict and prior_max_epochs is not None:
            # the schedule asked for now wins over the saved one, so a finished run can be extended
            engine.state.max_epochs = prior_max_epochs
        rng_states = checkpoint.get("rng_states")
        if rng_states is not None and len(rng_states) == distributed.world_size():
            torch.set_rng_state(rng_states[distributed.rank()])
        else:
            torch.set_rng_state(checkpoint["rng_state"])
        self.resumed_from = int(checkpoint.get("iteration", 0))
        logger.info("Resumed from %s at iteration %d.", self.path, self.resumed_from)
