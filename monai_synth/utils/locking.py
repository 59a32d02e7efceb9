"""An exclusive lock file held for a whole run, so two processes never write one output folder at once.

:class:`RunLock` takes ``fcntl.flock`` on POSIX: the kernel releases it when the holding process ends,
however it ends (``kill -9`` included), so a lock file left behind never blocks the next run. Where
``fcntl`` is missing (Windows) the file is created with ``O_EXCL`` instead and a file naming a dead
process of this host is taken over. The file holds the holder's pid and host for the error message.
"""

from __future__ import annotations

import errno
import json
import os
import platform
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LockHeldError", "RunLock"]


class LockHeldError(RuntimeError):
    """The lock file is held by another live process.

    Attributes:
        path: the lock file.
        pid: the holder's process id (``None`` when the file does not say yet).
        host: the holder's host name (``None`` when the file does not say yet).
    """

    def __init__(self, message: str, path: Path, pid: int | None, host: str | None) -> None:
        super().__init__(message)
        self.path, self.pid, self.host = path, pid, host


def _holder(path: Path) -> tuple[int | None, str | None]:
    """``(pid, host)`` written in a lock file, ``(None, None)`` if it is missing, empty or half written."""
    try:
        holder = json.loads(path.read_text())
        return int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would terminate the process on Windows
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists, it is not ours
        code = ctypes.c_ulong()
        try:
            return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """Exclusive, non-blocking lock on ``path`` for as long as this object holds it (a context manager).

    Acquiring never waits: a lock held by another process (or by another :class:`RunLock` of this
    process) raises :class:`LockHeldError` at once. :meth:`release` removes the file; after a crash the
    file stays but is free (POSIX) or is recognised as stale (the ``O_EXCL`` fallback).

    Args:
        path: the lock file, e.g. ``<output_dir>/.lock``; its folder must exist.

    Example::

        with RunLock(output_dir / ".lock"):
            ...  # only this process writes output_dir
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def _refuse(self) -> LockHeldError:
        pid, host = _holder(self.path)
        by = f"pid {pid} on host {host}" if pid is not None else "a process that has not written its pid yet"
        return LockHeldError(f"{self.path} is held by {by}.", self.path, pid, host)

    def _acquire_flock(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            held = False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                held = True
            if held:  # raised outside the handler: no "Resource temporarily unavailable" chained to it
                raise self._refuse()
            # the previous holder may have removed the file between our open and flock: retry on the new one
            try:
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def _acquire_exclusive(self) -> int:
        while True:
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                pass
            pid, host = _holder(self.path)
            if pid is None or host != platform.node() or _pid_alive(pid):
                raise self._refuse()
            self.path.unlink(missing_ok=True)  # a crashed holder of this host: stale

    def acquire(self) -> RunLock:
        """Take the lock and write this process's pid and host into the file.

        Raises:
            LockHeldError: another process (or another lock object of this one) holds it.
        """
        if self.held:
            raise RuntimeError(f"{self.path} is already held by this RunLock.")
        fd = self._acquire_flock() if fcntl is not None else self._acquire_exclusive()
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": platform.node()}).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the file and release the lock (a no-op when not held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it, so nobody locks a file about to vanish
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
