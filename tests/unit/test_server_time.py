"""Server time for readings without `ts` (readings._Clock) and the worker slots that make it unique
across processes (worker_slot.claim): two writers never produce the same timestamp."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from iot_api import readings, worker_slot
from iot_api.readings import _Clock


def test_the_digits_below_the_microsecond_are_the_writer_id(monkeypatch):
    clock = _Clock(writer_id=7)
    values = [clock.next() for _ in range(1000)]
    assert all(v % 1000 == 7 for v in values)
    assert values == sorted(set(values))  # strictly increasing


def test_a_stalled_or_backward_clock_still_gives_new_timestamps(monkeypatch):
    now = iter([5_000_123_456, 5_000_123_456, 5_000_000_000, 5_000_124_999])
    monkeypatch.setattr(readings.time, "time_ns", lambda: next(now))
    clock = _Clock(writer_id=3)
    assert [clock.next() for _ in range(4)] == [5_000_123_003, 5_000_124_003, 5_000_125_003, 5_000_126_003]


def test_two_writers_reading_the_same_nanosecond_do_not_collide(monkeypatch):
    monkeypatch.setattr(readings.time, "time_ns", lambda: 1_767_225_600_123_456_789)
    a, b = _Clock(writer_id=0), _Clock(writer_id=1)
    assert a.next() != b.next()


def test_writer_ids_out_of_range_are_refused():
    with pytest.raises(ValueError, match="out of range"):
        _Clock().set_writer(1000)


def test_slots_are_claimed_once_each_and_freed_when_the_process_ends(tmp_path):
    held = list(worker_slot._held)
    try:
        # Another process takes slot 0 and exits: its lock goes with it.
        code = f"from iot_api import worker_slot; assert worker_slot.claim(3, {str(tmp_path)!r}) == 0"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
        assert worker_slot.claim(3, str(tmp_path)) == 0
        assert worker_slot.claim(3, str(tmp_path)) == 1  # a second claimant (its own open file) gets the next
        assert worker_slot.claim(3, str(tmp_path)) == 2
        with pytest.raises(worker_slot.NoFreeSlot, match="all 3 worker slots"):
            worker_slot.claim(3, str(tmp_path), timeout_s=0.2)
    finally:
        for fd in worker_slot._held[len(held):]:
            os.close(fd)
        worker_slot._held[:] = held


def test_a_single_process_is_slot_zero_without_files(tmp_path):
    assert worker_slot.claim(1, str(tmp_path)) == 0
    assert worker_slot.claim(4, None) == 0
    assert list(tmp_path.iterdir()) == []
