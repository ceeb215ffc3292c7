"""One writer per run: the lock file, held with flock while a process writes the run."""

from __future__ import annotations

import os
from pathlib import Path

from detcheck.errors import RunBusy, StorageError
from detcheck.store.files import _os_reason

LOCK_NAME = "_detcheck.lock"


class RunLock:
    """The right to write one run: an exclusive flock on `_detcheck.lock` holding the writer's
    pid. The kernel drops it when the holder dies (kill -9 included), so a dead holder never
    blocks a resume; a live one makes a second writer fail at once with its pid."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StorageError(f"cannot write {self.path}: {_os_reason(exc)}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunBusy(
                    f"{run_dir} is being written by another detcheck process (pid {holder}, "
                    f"lock {self.path}); wait for it to finish or stop it, then resume"
                ) from None
            # the holder before us may have removed the file between our open and our lock:
            # a lock on a removed file guards nothing, so take the one at the path
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still held: nobody can take the old file
        os.close(self._fd)
        self._fd = None
