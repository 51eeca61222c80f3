"""How the api's InfluxDB client and group-commit writer treat a write that InfluxDB could not store.

InfluxDB 1.x answers 400 for any "partial write", its own disk failures included (seen with Debian's
1.6.7 on a full filesystem: tests/integration/test_api_disk_full.py): those must become Unavailable
(503, resent by the devices), never a per-reading 400 (422, final). Failures are logged with
InfluxDB's message, rate-limited, and recovery is logged once.

`Influx.write` runs against a small aiohttp server on loopback that answers what InfluxDB answered;
the writer runs against a stand-in whose `write` is scripted. No InfluxDB here.
"""
from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from iot_api import writer as writer_module
from iot_api.influx import DatabaseMissing, Influx, StorageFailed, Unavailable, server_side
from iot_api.writer import GroupCommitWriter

WAL_FULL = ("engine: error writing WAL entry: write /var/lib/influxdb/wal/iot/iot_rp/1/_00001.wal: "
            "no space left on device")
SERIES_FULL = "partial write: write /var/lib/influxdb/data/iot/_series/07/0000: no space left on device dropped=2000"
CLIENT_400 = [
    'partial write: field type conflict: input field "value" on measurement "data" is type string, '
    "already exists as type float dropped=1",
    "partial write: points beyond retention policy dropped=1",
    "unable to parse 'data,sensor_id=a value=': missing field value",
]


@pytest.mark.parametrize("error", [WAL_FULL, SERIES_FULL, "write /x: read-only file system",
                                   "open /x: too many open files", "write /x: input/output error"])
def test_influxdb_failures_on_its_own_side_are_recognised(error):
    assert server_side(error)


@pytest.mark.parametrize("error", CLIENT_400)
def test_problems_of_the_readings_are_not(error):
    assert not server_side(error)


def _write_through(status: int, body: str) -> tuple[int, str] | Exception:
    """Influx.write against a loopback server answering `status` with InfluxDB's JSON error `body`."""
    async def run():
        async def handler(_request):
            if status == 204:
                return web.Response(status=204)
            return web.json_response({"error": body}, status=status)

        app = web.Application()
        app.router.add_post("/write", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        influx = Influx(f"http://127.0.0.1:{port}", "iot", "iot_rp", None, None, timeout_s=5)
        await influx.open()
        try:
            return await influx.write(b"data,sensor_id=a,type=temp value=1 1\n")
        except Exception as exc:  # noqa: BLE001 - returned for the assertions
            return exc
        finally:
            await influx.close()
            await runner.cleanup()

    return asyncio.run(run())


def test_a_400_caused_by_a_full_disk_raises_storage_failed_with_influxdbs_message():
    result = _write_through(400, SERIES_FULL)
    assert isinstance(result, StorageFailed) and isinstance(result, Unavailable)
    assert "no space left on device" in str(result) and "_series/07" in str(result)


def test_a_500_raises_storage_failed_and_a_real_400_is_returned_for_bisection():
    result = _write_through(500, WAL_FULL)
    assert isinstance(result, StorageFailed) and "answered 500" in str(result) and WAL_FULL in str(result)
    assert _write_through(400, CLIENT_400[0]) == (400, CLIENT_400[0])
    assert isinstance(_write_through(404, "database not found: \"iot\""), DatabaseMissing)
    assert _write_through(204, "") == (204, "")


class ScriptedInflux:
    """Stand-in for Influx: each write pops the next scripted result (an exception or a status)."""

    def __init__(self, script):
        self.script = list(script)
        self.bodies: list[bytes] = []

    async def write(self, body: bytes):
        self.bodies.append(body)
        result = self.script.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def _writer(influx) -> GroupCommitWriter:
    return GroupCommitWriter(influx, max_points=100, max_delay_s=0, in_flight=1, max_pending=1000)


def test_write_failures_are_logged_with_influxdbs_message_once_per_interval_then_recovery(caplog, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(writer_module.time, "monotonic", lambda: clock[0])
    full = StorageFailed(f"InfluxDB write answered 500: {WAL_FULL}")
    influx = ScriptedInflux([full, full, full, Unavailable("InfluxDB write failed: ClientConnectorError"),
                             full, (204, "")])

    async def run():
        w = _writer(influx)
        outcomes = []
        for step in range(6):
            if step == 4:
                clock[0] += writer_module.FAILURE_LOG_EVERY_S + 0.1
            try:
                outcomes.append(await w.submit([f"data,sensor_id=a,type=temp value=1 {step}\n"]))
            except Unavailable as exc:
                outcomes.append(exc)
        return outcomes

    with caplog.at_level(logging.INFO, logger="iot_api.writer"):
        outcomes = asyncio.run(run())
    assert [type(o).__name__ for o in outcomes] == ["StorageFailed"] * 3 + ["Unavailable", "StorageFailed", "Outcome"]
    lines = [(r.levelname, r.getMessage(), r.__dict__) for r in caplog.records]
    failed = [line for line in lines if line[1].startswith("InfluxDB write failed")]
    # first disk failure, first connection failure, then the disk again after the interval
    assert [(level, extra["kind"]) for level, _, extra in failed] == [
        ("ERROR", "StorageFailed"), ("WARNING", "Unavailable"), ("ERROR", "StorageFailed")]
    assert "no space left on device" in failed[0][2]["error"] and failed[0][2]["readings"] == 1
    assert failed[2][2]["similar_failures_not_logged"] == 2  # the two held back in between
    recovered = [extra for _, msg, extra in lines if msg == "InfluxDB writes succeed again"]
    assert len(recovered) == 1 and recovered[0]["failed_writes"] == 5


def test_a_disk_failure_during_bisection_fails_the_request_instead_of_rejecting_readings():
    """A refused batch is bisected; if InfluxDB's disk fails meanwhile, the request gets 503, not 422."""
    influx = ScriptedInflux([(400, CLIENT_400[0]), StorageFailed(f"InfluxDB write answered 400: {SERIES_FULL}")])

    async def run():
        return await _writer(influx).submit(["a 1\n", "b 2\n"])

    with pytest.raises(StorageFailed):
        asyncio.run(run())


def test_a_full_queue_is_counted_and_logged_once_per_interval(caplog, monkeypatch):
    """Above API_MAX_PENDING_POINTS the api answers 503: an operator must see it in the log (rate-
    limited, with how many requests were turned away) and in iot_api_readings_rejected_total."""
    from iot_api.writer import Overloaded
    from prometheus_client import REGISTRY

    clock = [1000.0]  # time.monotonic frozen (the loop's clock too): the test yields with sleep(0) only
    monkeypatch.setattr(writer_module.time, "monotonic", lambda: clock[0])

    def rejected():
        return REGISTRY.get_sample_value("iot_api_readings_rejected_total", {"reason": "overloaded"}) or 0

    class SlowInflux:  # holds every write until released: what InfluxDB slower than the load does
        def __init__(self):
            self.release = asyncio.Event()

        async def write(self, body):
            await self.release.wait()
            return 204, ""

    async def run():
        influx = SlowInflux()
        w = GroupCommitWriter(influx, max_points=100, max_delay_s=0, in_flight=1, max_pending=3)
        first = asyncio.create_task(w.submit(["a 1\n"]))  # in flight, held
        for _ in range(5):
            await asyncio.sleep(0)
        queued = asyncio.create_task(w.submit(["b 1\n", "c 1\n"]))  # waits in the queue: 2 of 3
        for _ in range(5):
            await asyncio.sleep(0)
        refused = 0
        for step in range(4):
            if step == 3:
                clock[0] += writer_module.FAILURE_LOG_EVERY_S + 0.1
            with pytest.raises(Overloaded):
                await w.submit(["d 1\n", "e 1\n"])
            refused += 1
        influx.release.set()
        return refused, [o.stored for o in await asyncio.gather(first, queued)]

    before = rejected()
    with caplog.at_level(logging.WARNING, logger="iot_api.writer"):
        refused, stored = asyncio.run(run())
    assert refused == 4 and stored == [1, 2]  # what was accepted is still stored
    assert rejected() - before == 8
    logged = [r.__dict__ for r in caplog.records if r.getMessage().startswith("queue full")]
    assert [(x["requests_turned_away"], x["queued"], x["limit"]) for x in logged] == [(1, 2, 3), (3, 2, 3)]
