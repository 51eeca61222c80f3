"""/readyz answers for every worker of the api (worker_slot.all_ready): each worker says in its slot
file whether it is ready; a slot counts only while its worker holds the file's lock. Run with a real
second process holding slot 0, and this process in slot 1."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from iot_api import worker_slot

HOLDER = """
import sys
from iot_api import worker_slot
assert worker_slot.claim(2, sys.argv[1]) == 0
worker_slot.mark_ready(True)
print("ready", flush=True)
sys.stdin.read()  # hold the slot until the test closes stdin or kills us
"""


@pytest.fixture
def own_slots():
    held = list(worker_slot._held)
    yield
    for fd in worker_slot._held[len(held):]:
        os.close(fd)
    worker_slot._held[:] = held


def test_ready_only_when_every_live_worker_says_so(tmp_path, own_slots):
    folder = str(tmp_path)
    assert not worker_slot.all_ready(2, folder)  # nobody started yet
    other = subprocess.Popen([sys.executable, "-c", HOLDER, folder], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert other.stdout.readline().strip() == "ready"
        assert not worker_slot.all_ready(2, folder)  # slot 1 not taken yet
        assert worker_slot.claim(2, folder) == 1
        assert not worker_slot.all_ready(2, folder)  # slot 1 taken, not ready
        worker_slot.mark_ready(True)
        assert worker_slot.all_ready(2, folder)
        worker_slot.mark_ready(False)  # e.g. its database went missing
        assert not worker_slot.all_ready(2, folder)
        worker_slot.mark_ready(True)
        assert worker_slot.all_ready(2, folder)
    finally:
        other.kill()
        other.wait()
    # The dead worker's file still says "ready", but nobody holds it any more.
    assert (tmp_path / "worker-0.lock").read_bytes() == b"ready"
    assert not worker_slot.all_ready(2, folder)
    # Its replacement takes the slot and is not ready until it says so.
    replacement = subprocess.Popen(
        [sys.executable, "-c", "import sys; from iot_api import worker_slot; worker_slot.claim(2, sys.argv[1]); "
                               "print('claimed', flush=True); sys.stdin.read()", folder],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert replacement.stdout.readline().strip() == "claimed"
        assert (tmp_path / "worker-0.lock").read_bytes() == b""
        assert not worker_slot.all_ready(2, folder)
    finally:
        replacement.kill()
        replacement.wait()


def test_a_single_process_answers_for_itself(tmp_path):
    assert worker_slot.all_ready(1, str(tmp_path))
    assert worker_slot.all_ready(2, None)
