"""``python -m monai.bundle`` with a test-only kill switch: SIGKILL the process in the middle of a file write.

Used by the fault-injection tests as ``python tests/reliability/kill_switch.py run --config_file ...``
(the same arguments as ``python -m monai.bundle``). Environment variables, each ``<name part>:<n>``:

- ``RELIABILITY_KILL_DURING_TORCH_SAVE``: the n-th ``torch.save`` to a path containing ``<name part>``
  writes the first half of its bytes, flushes them to disk, and the process kills itself.
- ``RELIABILITY_KILL_BEFORE_REPLACE``: the n-th ``os.replace`` onto a path containing ``<name part>``
  (the atomic writers' final rename) first truncates the finished temporary file to half its size,
  then the process kills itself: the write is cut off before the file reaches its place.

Production code is untouched; only this process's ``torch.save`` / ``os.replace`` are wrapped.
"""

from __future__ import annotations

import io
import os
import runpy
import signal

__all__: list[str] = []


def _spec(name: str) -> tuple[str, int] | None:
    value = os.environ.get(name)
    if not value:
        return None
    part, count = value.rsplit(":", 1)
    return part, int(count)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm_torch_save(part: str, target: int) -> None:
    import torch

    original, calls = torch.save, [0]

    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and part in os.fspath(f):
            calls[0] += 1
            if calls[0] == target:
                buffer = io.BytesIO()
                original(obj, buffer, *args, **kwargs)
                data = buffer.getvalue()
                with open(f, "wb") as out:
                    out.write(data[: len(data) // 2])
                    out.flush()
                    os.fsync(out.fileno())
                _die()
        return original(obj, f, *args, **kwargs)

    torch.save = save


def _arm_replace(part: str, target: int) -> None:
    original, calls = os.replace, [0]

    def replace(src, dst, *args, **kwargs):
        if part in os.fspath(dst):
            calls[0] += 1
            if calls[0] == target:
                size = os.path.getsize(src)
                with open(src, "r+b") as f:
                    f.truncate(size // 2)
                    os.fsync(f.fileno())
                _die()
        return original(src, dst, *args, **kwargs)

    os.replace = replace


if __name__ == "__main__":
    if spec := _spec("RELIABILITY_KILL_DURING_TORCH_SAVE"):
        _arm_torch_save(*spec)
    if spec := _spec("RELIABILITY_KILL_BEFORE_REPLACE"):
        _arm_replace(*spec)
    runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
