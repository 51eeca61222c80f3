"""InfluxDB's disk full under the real api: 503 with Retry-After and InfluxDB's own message, never a 201
(nor a final 422) for a reading that is not stored; after space is freed, the resent readings make the
count exact.

A real influxd keeps its data and WAL on a small tmpfs mounted for the test (root only: skipped, with
the reason, otherwise), which the test fills with a file. What Debian's InfluxDB 1.6.7 does then, and
what this test therefore walks through:
- a write that creates new series fails in its series file and is answered **400** `partial write:
  write .../_series/..: no space left on device`. The api used to treat that 400 as the readings'
  fault and bisect the request: what the disk's last free bytes could not take was answered 422 (final
  for the devices: lost), the rest depending on luck; it now answers 503 at once, with that reason;
- a write to existing series fails in the WAL and is answered 500 (`error writing WAL entry`);
- the WAL stays failed after space is freed, until influxd restarts (InfluxDB 1.x's buffered WAL writer
  keeps its error: influxdata/influxdb#9923, #23126), so the operator's fix is free space + restart.
"""
from __future__ import annotations

import calendar
import json
import os
import subprocess
import time

import pytest
from harness import InfluxServer
from iot_simulator.timestamps import format_ns

FS_SIZE = "8m"
SENSORS = 20


@pytest.fixture
def influx_on_small_fs(tmp_path):
    """(mount point, InfluxServer with its data and WAL on a tmpfs of FS_SIZE); unmounted at the end."""
    if os.environ.get("INFLUXDB_URL"):
        pytest.skip("needs its own influxd on a small filesystem; INFLUXDB_URL points at a shared one")
    if os.geteuid() != 0:
        reason = "mounting a small tmpfs for InfluxDB's data needs root (mount -t tmpfs)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    mnt = tmp_path / "influxdb-fs"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0755", "iot-disk-full", str(mnt)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        reason = f"cannot mount a tmpfs here: {proc.stderr.strip()}"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    server = None
    try:
        server = InfluxServer(data_dir=mnt)
        yield mnt, server
    finally:
        if server is not None:
            server.close()
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)


def fill(path) -> int:
    """Write zeros to `path` until the filesystem refuses (ENOSPC), in smaller and smaller pieces."""
    written = 0
    with open(path, "wb", buffering=0) as fh:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    written += fh.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != 28:  # ENOSPC
                    raise
    return written


class Readings:
    """Unique readings (sensor, type temp, ns timestamp) and what the api answered for each."""

    def __init__(self):
        self.next_ns = time.time_ns() - 10 * 10**9  # one shard: a few ms of timestamps, 10 s ago
        self.acked: set[tuple[str, str, int]] = set()
        self.refused: list[list[dict]] = []  # bodies answered 503: resent at the end, as a device does

    def batch(self, sensors: list[str], n: int) -> list[dict]:
        out = []
        for i in range(n):
            self.next_ns += 1000
            out.append({"sensor_id": sensors[i % len(sensors)], "type": "temp", "value": i % 50 + 0.5,
                        "ts": format_ns(self.next_ns)})
        return out

    @staticmethod
    def keys(batch: list[dict]) -> set[tuple[str, str, int]]:
        return {(r["sensor_id"], r["type"], _ns(r["ts"])) for r in batch}


def _ns(ts: str) -> int:
    whole, frac = ts.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) * 10**9 + int(frac)


def test_disk_full_answers_503_with_influxdbs_reason_never_201_and_resends_make_the_count_exact(
        influx_on_small_fs, start_api):
    mnt, influx = influx_on_small_fs
    api = start_api(influx=influx, env={"API_RETRY_AFTER": "1"})
    r = Readings()
    old = [f"df-{i:02d}" for i in range(SENSORS)]

    # Before: the series exist, everything is acknowledged.
    for _ in range(5):
        body = r.batch(old, 100)
        status, _, answer = api.post("/data", body)
        assert (status, answer) == (201, {"stored": 100})
        r.acked |= r.keys(body)

    filled = fill(mnt / "filler")
    print(f"filled the {FS_SIZE} tmpfs with {filled / 2**20:.1f} MiB")

    # New series first, while the WAL still has room in its last page: InfluxDB itself answers 400
    # "partial write ... no space left on device" (its series file) ...
    direct, text = influx.write(api.db, "".join(f"data,sensor_id=df-direct-{i:04d},type=temp value=1 {r.next_ns + i}\n"
                                                for i in range(2000)))
    print(f"InfluxDB's own answer to new series on the full disk: {direct} {text[:200]!r}")
    assert direct == 400 and b"no space left on device" in text, text
    # ... which the api must answer 503 (resend later), not 422 (rejected for good).
    answers_503 = []
    new = [f"df-new-{i:04d}" for i in range(2000)]
    for _ in range(3):
        body = r.batch(new, 2000)
        status, headers, answer = api.post("/data", body)
        assert status == 503, (status, answer)
        answers_503.append((headers, answer))
        r.refused.append(body)
    assert any("answered 400" in a["error"] and "partial write" in a["error"] for _, a in answers_503), \
        answers_503[-1]

    # Existing series: the WAL's last page may still take a write or two (then they are stored, and
    # 201 is right); from the first 503 on, nothing may be answered 201 while the disk is full.
    statuses: list[int] = []
    for _ in range(60):
        body = r.batch(old, 200)
        status, headers, answer = api.post("/data", body)
        statuses.append(status)
        assert status in (201, 503), (status, answer)
        if status == 201:
            assert 503 not in statuses[:-1], f"201 after a 503 while InfluxDB's disk is still full: {statuses}"
            r.acked |= r.keys(body)
        else:
            answers_503.append((headers, answer))
            r.refused.append(body)
            if statuses.count(503) >= 5:
                break
    print(f"existing series after the fill: {statuses}")
    assert any("error writing WAL entry" in a["error"] for _, a in answers_503), answers_503[-1]

    for headers, answer in answers_503:
        assert headers.get("retry-after") == "1"
        assert "not acknowledged" in answer["error"] and "no space left on device" in answer["error"]
        assert answer["retry_after"] == 1

    # The api's log names the failure with InfluxDB's message, once per kind and interval, not per request.
    events = [json.loads(line) for line in api.log().splitlines() if line.startswith("{")]
    failed = [e for e in events if e["msg"].startswith("InfluxDB write failed")]
    print("api log:", *[json.dumps(e) for e in failed], sep="\n  ")
    assert failed and failed[0]["level"] == "error" and failed[0]["kind"] == "StorageFailed"
    assert "no space left on device" in failed[0]["error"]
    assert len(failed) <= 3, f"{len(failed)} log lines for one outage: not rate-limited"

    # Free the space. InfluxDB 1.6's WAL stays failed until influxd restarts: what an operator does.
    (mnt / "filler").unlink()
    body = r.batch(old, 1)
    status, _, answer = api.post("/data", body)
    if status == 201:
        r.acked |= r.keys(body)
    else:
        r.refused.append(body)
    print(f"after freeing space, before restarting influxd: {status} {str(answer)[:160]}")
    influx.stop()
    influx.start()

    # Devices resend what was refused, until acknowledged.
    deadline = time.monotonic() + 60
    pending = list(r.refused)
    while pending and time.monotonic() < deadline:
        status, _, answer = api.post("/data", pending[0])
        if status == 201:
            r.acked |= r.keys(pending.pop(0))
        else:
            assert status == 503, (status, answer)
            time.sleep(0.2)
    assert not pending, f"{len(pending)} refused batches still not stored after 60 s"
    assert "InfluxDB writes succeed again" in api.log()

    stored = influx.points(api.db, "WHERE \"sensor_id\" =~ /^df-(new-)?[0-9]/")
    print(f"acknowledged {len(r.acked)}, stored {len(stored)}")
    assert len(stored) == len(set(stored)), "duplicate points"
    assert set(stored) == r.acked
