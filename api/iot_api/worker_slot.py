"""Which of the api's worker processes this is, so that each has its own id for server timestamps
(readings._Clock). uvicorn gives its workers no index: each claims the first free slot by locking a
file in a folder that `python -m iot_api` makes for the run. The kernel releases the lock when the
process ends, so a worker that uvicorn restarts takes the slot of the one that died.

The slot's file also says whether its worker is ready (InfluxDB set up): /readyz, answered by
whichever worker the connection reached, answers for all of them (`all_ready`), so a healthcheck does
not call the api ready while another worker would still answer 503 (seen: a few 503s right after
start, under load, with 2 workers). A slot is ready when its file says so and is still locked: a
worker that died leaves its file unlocked."""
from __future__ import annotations

import fcntl
import os
import time

SLOTS_DIR_ENV = "IOT_API_WORKER_SLOTS_DIR"  # set by __main__ for its workers, not a user setting
_held: list[int] = []  # the locked files, open for the life of the process
_READY = b"ready"


class NoFreeSlot(RuntimeError):
    pass


def claim(workers: int, folder: str | None, timeout_s: float = 15.0) -> int:
    """The slot (0..workers-1) of this process; 0 for a single process."""
    if workers == 1 or not folder:
        return 0
    deadline = time.monotonic() + timeout_s
    while True:
        for slot in range(workers):
            fd = os.open(os.path.join(folder, f"worker-{slot}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)  # not ready (a worker that died may have left "ready")
            _held.append(fd)
            return slot
        if time.monotonic() > deadline:  # a restarted worker may briefly overlap the one it replaces
            raise NoFreeSlot(f"all {workers} worker slots in {folder} stay taken")
        time.sleep(0.1)


def mark_ready(ready: bool) -> None:
    """Say in this process's slot file whether it is ready (no-op for a single process)."""
    for fd in _held:
        os.ftruncate(fd, 0)
        if ready:
            os.pwrite(fd, _READY, 0)


def all_ready(workers: int, folder: str | None) -> bool:
    """Every slot's worker running and ready. True for a single process (it answers for itself)."""
    if workers == 1 or not folder:
        return True
    for slot in range(workers):
        try:
            fd = os.open(os.path.join(folder, f"worker-{slot}.lock"), os.O_RDONLY)
        except FileNotFoundError:  # that worker has not started yet
            return False
        try:
            if os.pread(fd, len(_READY), 0) != _READY:
                return False
            try:  # a shared lock granted: nobody holds the slot, its worker is gone
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # held: its worker is alive
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)
    return True
