"""Helpers the bundle configs call: checking overrides against the config's own keys, resolving the device."""

from __future__ import annotations

import difflib
import inspect
import logging
import sys
import traceback
from collections.abc import Mapping, Sequence
from types import FrameType, TracebackType
from typing import Any

import torch
from monai.bundle import ConfigParser

__all__ = ["check_overrides", "validate_overrides", "override_settings", "check_choice", "resolve_device"]

logger = logging.getLogger(__name__)

# arguments of `monai.bundle run` / `create_workflow` / `ConfigWorkflow` themselves, never config keys
RUN_ARGUMENTS = frozenset(
    {
        "run_id",
        "init_id",
        "final_id",
        "meta_file",
        "config_file",
        "logging_file",
        "tracking",
        "args_file",
        "workflow_name",
        "workflow_type",
        "properties_path",
    }
)
# top-level keys that hold the workflow itself rather than a setting a user would override
_STRUCTURAL_KEYS = frozenset({"imports", "initialize", "run", "finalize", "_meta_"})
_REFERENCE_PREFIXES = ("$", "@", "%")


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(_REFERENCE_PREFIXES)


def _is_component(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "_target_" in value
    if isinstance(value, (list, tuple)):
        return any(_is_component(v) for v in value)
    return False


def override_settings(config: Mapping[str, Any]) -> list[str]:
    """The top-level keys of a bundle config that are settings (values and references, not components).

    Args:
        config: the raw config content (``ConfigParser.load_config_files(...)``).

    Returns:
        Sorted setting names, e.g. ``["batch_size", "dataset_dir", ...]``.
    """
    return sorted(k for k, v in config.items() if k not in _STRUCTURAL_KEYS and not _is_component(v))


def _compatible(default: Any, value: Any) -> bool:
    if default is None or value is None or _is_reference(default) or _is_reference(value):
        return True  # None is how a user switches a setting off (``--ema_rampup None``); the code validates it
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return True
        # one value for a list setting (``--num_synthetic 100`` for ``[20, 80]``): the code wraps it
        return bool(default) and all(_compatible(d, value) for d in default) and not isinstance(value, Mapping)
    if isinstance(default, Mapping):
        return isinstance(value, Mapping)
    return True


def validate_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """Refuse overrides that are not keys of ``config`` or whose value has another type than the default.

    ``monai.bundle run`` adds unknown keys to the config without a word, so a typo (``--max_epoch 5``)
    would silently train with the default. A nested id (``trainer#max_epochs``) must exist in the
    config too. Defaults that are ``None`` or references (``$``/``@``/``%``) accept any value; ``None``
    and references (``$``/``@``/``%``) are accepted for any setting (the code checks what ``None`` means).

    Args:
        config: the raw config content as written in the config file(s), before the overrides.
        overrides: ``{id: value}`` as parsed by ``monai.bundle`` (``--image_size 32`` -> ``{"image_size": 32}``).

    Raises:
        ValueError: naming the unknown setting(s) (with close matches and the accepted ones) or the
            setting whose value has the wrong type.
    """
    parser = ConfigParser(dict(config))
    unknown = sorted(k for k in overrides if k not in parser)
    if unknown:
        settings = override_settings(config)
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, settings, n=1)
            hints.append(f"--{key}" + (f" (did you mean --{close[0]}?)" if close else ""))
        raise ValueError(
            f"Unknown setting(s) {', '.join(hints)}; this bundle accepts: "
            + ", ".join("--" + k for k in settings)
            + "."
        )
    for key, value in overrides.items():
        default = parser[key]
        if not _compatible(default, value):
            hint = " (write True or False)" if isinstance(default, bool) else ""
            raise ValueError(
                f"--{key} expects a value like {default!r} ({type(default).__name__}), got {value!r}{hint}."
            )


def _running_workflow_arguments(frame: FrameType | None) -> tuple[Any, dict[str, Any]] | None:
    """``(config_file, overrides)`` of the ``monai.bundle`` workflow being created, found on the call stack.

    ``monai.bundle.run`` (command line, Python call or ``--args_file``) builds the workflow in
    ``monai.bundle.scripts.create_workflow``, which holds the config file(s) and every override (the
    args file already merged in) while the workflow initialises. MONAI offers no other way for a config
    to see its own overrides.
    """
    while frame is not None:
        if frame.f_code.co_name == "create_workflow" and frame.f_globals.get("__name__") == "monai.bundle.scripts":
            local = frame.f_locals
            if "_args" in local and "config_file" in local:
                overrides = {k: v for k, v in local["_args"].items() if k not in RUN_ARGUMENTS}
                return local["config_file"], overrides
        frame = frame.f_back
    return None


def check_overrides(config_file: str | Sequence[str] | None = None, overrides: Mapping[str, Any] | None = None) -> bool:
    """Validate the overrides of the running bundle against its config file(s), before any work starts.

    Bundle configs call it with no arguments as their first ``initialize`` step: it finds the config
    file(s) and overrides of the ``monai.bundle`` run in progress (``python -m monai.bundle run``,
    ``monai.bundle.run(config_file=..., **overrides)`` or ``--args_file``), reads the files as written
    and calls :func:`validate_overrides`. It also makes the project's own message the last line of a
    failed command-line run (see :func:`install_error_summary`).

    Args:
        config_file: config file(s) to validate against; found from the running workflow when omitted.
        overrides: ``{id: value}``; found from the running workflow when omitted.

    Returns:
        True (so it can sit in an ``initialize`` list).

    Raises:
        ValueError: an unknown setting or a value of the wrong type (see :func:`validate_overrides`).
    """
    install_error_summary()
    if isinstance(config_file, Mapping):  # a config from before overrides were checked against the file itself
        config_file = None
    if config_file is None or overrides is None:
        found = _running_workflow_arguments(inspect.currentframe())
        if found is None:
            logger.debug("check_overrides: no monai.bundle workflow on the stack; overrides not checked.")
            return True
        config_file = found[0] if config_file is None else config_file
        overrides = found[1] if overrides is None else overrides
    if config_file is None:
        return True
    validate_overrides(ConfigParser.load_config_files(config_file), overrides)
    return True


def _root_cause(error: BaseException) -> BaseException:
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        nxt = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
        if nxt is None:
            break
        error = nxt
    return error


def _summarising_excepthook(previous):
    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        previous(kind, error, tb)
        root = _root_cause(error)
        if root is not error:
            # MONAI wraps errors raised in configs ("Failed to evaluate ConfigExpression ..."): repeat ours last
            message = "".join(traceback.format_exception_only(type(root), root)).strip()
            print(f"\nmonai_synth: {message}", file=sys.stderr)

    hook.monai_synth = True  # type: ignore[attr-defined]
    return hook


def install_error_summary() -> None:
    """Make the root cause the last line printed when a bundle run ends in an uncaught error.

    ``monai.bundle`` wraps an error raised inside a config component or expression in a generic
    ``RuntimeError: Failed to instantiate/evaluate ...``; this chains to the current ``sys.excepthook``
    (the full traceback is still printed) and then prints the original error. Idempotent.
    """
    if not getattr(sys.excepthook, "monai_synth", False):
        sys.excepthook = _summarising_excepthook(sys.excepthook)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    Raises:
        ValueError: a CUDA device asked for on a machine without one.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} was asked for but CUDA is not available; use --device cpu.")
    return device


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> bool:
    """Refuse a setting outside its allowed values, naming the setting and the choices.

    Returns:
        True (so it can sit in an ``initialize`` list).
    """
    if value not in tuple(choices):
        raise ValueError(f"--{name} must be one of {list(choices)}, got {value!r}.")
    return True
