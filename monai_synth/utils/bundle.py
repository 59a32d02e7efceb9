"""Helpers the bundle configs call: checking command-line overrides, resolving the device."""

from __future__ import annotations

import ast
import sys
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["check_overrides", "check_choice", "resolve_device"]

# arguments of `python -m monai.bundle run` itself, never config keys
_RUN_ARGUMENTS = {"run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file"}


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _cli_overrides(argv: Sequence[str]) -> dict[str, Any]:
    """``--key value`` / ``--key=value`` pairs after ``run`` in ``python -m monai.bundle run ...``."""
    out: dict[str, Any] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        token = args[i]
        if token.startswith("--") and len(token) > 2:
            key = token[2:]
            if "=" in key:
                key, value = key.split("=", 1)
                out[key.replace("-", "_")] = _parse_value(value)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                out[key.replace("-", "_")] = _parse_value(args[i + 1])
                i += 1
            else:
                out[key.replace("-", "_")] = True
        i += 1
    return out


def _compatible(default: Any, value: Any) -> bool:
    if default is None or isinstance(default, str) and default.startswith("$"):
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True


def check_overrides(settings: dict[str, Any], argv: Sequence[str] | None = None) -> bool:
    """Refuse unknown command-line overrides and overrides of the wrong type, before any work starts.

    ``python -m monai.bundle run`` accepts any ``--key value`` and silently adds unknown keys to the
    config, so a typo (``--max_epoch 5``) would train with the default. Bundle configs call this from
    ``initialize`` with their documented settings and their defaults.

    Args:
        settings: ``{name: default value}`` of the overridable settings (``None`` accepts any value).
        argv: command-line arguments; defaults to ``sys.argv``.

    Returns:
        True (so it can sit in an ``initialize`` list).

    Raises:
        ValueError: naming the unknown setting (and the known ones) or the setting whose value has
            the wrong type.
    """
    overrides = _cli_overrides(sys.argv[1:] if argv is None else argv)
    unknown = sorted(k for k in overrides if k not in settings and k not in _RUN_ARGUMENTS and "#" not in k)
    if unknown:
        raise ValueError(
            f"Unknown setting(s) {', '.join('--' + k for k in unknown)}; this bundle accepts: "
            + ", ".join("--" + k for k in sorted(settings))
            + "."
        )
    for key, value in overrides.items():
        if key in settings and not _compatible(settings[key], value):
            hint = " (write True or False)" if isinstance(settings[key], bool) else ""
            raise ValueError(
                f"--{key} expects a value like {settings[key]!r} ({type(settings[key]).__name__}), got {value!r}{hint}."
            )
    return True


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
