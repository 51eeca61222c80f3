"""The device agent's on-disk queue: a real SQLite file in a temporary directory."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from iot_device.queue import Queue, QueueClosed, QueueError


def reading(i: int, value: float = 40.0) -> dict:
    return {"ts": f"2024-05-01T12:00:{i:02d}.000000Z", "type": "temp", "value": value, "sensor_id": "pi-1"}


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "state" / "queue.sqlite3")  # the directory does not exist yet


def test_enqueue_peek_ack_in_order(path):
    q = Queue(path)
    for i in range(5):
        assert q.enqueue(reading(i, 40 + i)) == 0
    rows = q.peek(3)
    assert [r.reading() for r in rows] == [reading(i, 40 + i) for i in range(3)]
    assert q.peek(3) == rows  # peeking removes nothing
    q.ack([r.id for r in rows])
    assert [r.ts for r in q.peek(10)] == [reading(3)["ts"], reading(4)["ts"]]
    stats = q.stats()
    assert stats["queued"] == 2 and stats["enqueued_total"] == 5 and stats["sent_total"] == 3
    assert stats["oldest_queued_ts"] == reading(3)["ts"] and stats["newest_queued_ts"] == reading(4)["ts"]
    assert stats["last_sent_at"]


def test_wal_mode_and_full_sync(path):
    q = Queue(path)
    assert q._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert q._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_settle_moves_refused_readings_to_dead_letter_with_the_message(path):
    q = Queue(path)
    for i in range(4):
        q.enqueue(reading(i))
    ids = [r.id for r in q.peek(4)]
    # e.g. a 422 with "rejected": index 1 refused, the others stored
    q.settle([ids[0], ids[2], ids[3]], [(ids[1], 422, "ts: is before 2000-01-01T00:00:00Z")])
    assert q.count() == 0
    dead = q.rejected_rows()
    assert len(dead) == 1
    assert dead[0]["ts"] == reading(1)["ts"] and dead[0]["status"] == 422
    assert dead[0]["message"] == "ts: is before 2000-01-01T00:00:00Z" and dead[0]["rejected_at"]
    stats = q.stats()
    assert (stats["sent_total"], stats["rejected_total"], stats["rejected"]) == (3, 1, 1)


def test_dead_letter_without_acking_keeps_the_others_queued(path):
    q = Queue(path)
    for i in range(3):
        q.enqueue(reading(i))
    ids = [r.id for r in q.peek(3)]
    q.settle([], [(ids[2], 422, "bad")])  # a 422 with "problems": nothing stored
    assert [r.id for r in q.peek(10)] == ids[:2]
    assert q.stats()["sent_total"] == 0


def test_settle_is_one_transaction(path):
    q = Queue(path)
    for i in range(3):
        q.enqueue(reading(i))
    ids = [r.id for r in q.peek(3)]
    # a rejected item whose message cannot be stored (NOT NULL) fails the whole settle: nothing is lost
    with pytest.raises(sqlite3.IntegrityError):
        q.settle([ids[0]], [(ids[1], 422, None)])
    assert [r.id for r in q.peek(10)] == ids
    assert q.rejected_rows() == []
    q.enqueue(reading(9))  # and the queue still works afterwards
    assert q.count() == 4


def test_survives_reopening(path):
    q = Queue(path)
    for i in range(3):
        q.enqueue(reading(i))
    q.ack([q.peek(1)[0].id])
    q.set_state(last_error="HTTP 503: influxdb down")
    q.close()
    q2 = Queue(path)
    assert [r.ts for r in q2.peek(10)] == [reading(1)["ts"], reading(2)["ts"]]
    stats = q2.stats()
    assert stats["enqueued_total"] == 3 and stats["sent_total"] == 1
    assert stats["last_error"] == "HTTP 503: influxdb down"
    q2.enqueue(reading(3))
    assert [r.id for r in q2.peek(10)] == sorted(r.id for r in q2.peek(10))  # ids keep growing


def test_a_process_killed_right_after_enqueue_loses_nothing(path):
    # The writer is SIGKILLed without closing anything, as a power cut would: committed rows survive.
    child = textwrap.dedent(f"""
        import os, signal, sys
        from iot_device.queue import Queue
        q = Queue({path!r})
        for i in range(50):
            q.enqueue({{"ts": "2024-05-01T12:00:00.%06dZ" % i, "type": "temp", "value": i, "sensor_id": "pi"}})
        sys.stdout.write("committed\\n"); sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout == "committed\n"
    q = Queue(path)
    rows = q.peek(100)
    assert [r.value for r in rows] == [float(i) for i in range(50)]
    assert q.stats()["enqueued_total"] == 50


def test_bounded_drops_the_oldest_and_counts_them(path):
    q = Queue(path, max_rows=3)
    dropped = [q.enqueue(reading(i)) for i in range(5)]
    assert dropped == [0, 0, 0, 1, 1]
    assert [r.ts for r in q.peek(10)] == [reading(i)["ts"] for i in (2, 3, 4)]
    stats = q.stats()
    assert stats["dropped_total"] == 2 and stats["queued"] == 3 and stats["enqueued_total"] == 5
    # reopening with a smaller bound trims at the next reading
    q.close()
    q = Queue(path, max_rows=1)
    assert q.enqueue(reading(5)) == 3
    assert [r.ts for r in q.peek(10)] == [reading(5)["ts"]]


def test_ack_of_rows_dropped_meanwhile_is_harmless(path):
    q = Queue(path, max_rows=2)
    q.enqueue(reading(0))
    batch = q.peek(10)
    q.enqueue(reading(1))
    q.enqueue(reading(2))  # drops reading 0 while it was "in flight"
    q.settle([], [(batch[0].id, 422, "bad")])  # nothing to move any more
    q.ack([r.id for r in batch])
    assert q.count() == 2 and q.rejected_rows() == []
    assert q.stats()["sent_total"] == 0


def test_readonly_open_never_creates_a_queue(tmp_path):
    missing = tmp_path / "nope.sqlite3"
    with pytest.raises(QueueError) as err:
        Queue(str(missing), readonly=True)
    assert "no queue at" in str(err.value)
    assert not missing.exists()


def test_readonly_sees_what_the_writer_committed(path):
    q = Queue(path)
    q.enqueue(reading(0))
    ro = Queue(path, readonly=True)
    assert ro.stats()["queued"] == 1
    with pytest.raises(sqlite3.OperationalError):
        ro.enqueue(reading(1))


def test_unusable_path_is_a_queue_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(QueueError) as err:
        Queue(str(blocker / "queue.sqlite3"))  # parent is a file
    assert str(blocker) in str(err.value)
    not_sqlite = tmp_path / "garbage.sqlite3"
    not_sqlite.write_bytes(os.urandom(4096))
    with pytest.raises(QueueError):
        Queue(str(not_sqlite))


def test_closed_queue_refuses_work(path):
    q = Queue(path)
    q.close()
    q.close()  # idempotent
    with pytest.raises(QueueClosed):
        q.enqueue(reading(0))
    with pytest.raises(QueueClosed):
        q.peek(1)
