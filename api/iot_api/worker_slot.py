"""Which of the api's worker processes this is, so that each has its own id for server timestamps
(readings._Clock). uvicorn gives its workers no index: each claims the first free slot by locking a
file in a folder that `python -m iot_api` makes for the run. The kernel releases the lock when the
process ends, so a worker that uvicorn restarts takes the slot of the one that died."""
from __future__ import annotations

import fcntl
import os
import time

SLOTS_DIR_ENV = "IOT_API_WORKER_SLOTS_DIR"  # set by __main__ for its workers, not a user setting
_held: list[int] = []  # the locked files, open for the life of the process


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
            _held.append(fd)
            return slot
        if time.monotonic() > deadline:  # a restarted worker may briefly overlap the one it replaces
            raise NoFreeSlot(f"all {workers} worker slots in {folder} stay taken")
        time.sleep(0.1)
