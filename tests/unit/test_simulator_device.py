"""Simulator buffering and retry logic, with the HTTP sender replaced by a scripted in-process function.

These check the bookkeeping (never drop, never resend a rejected reading, pause when full, exact
counts); the real api and InfluxDB prove it end to end in tests/integration/test_simulator_api.py.
"""
from __future__ import annotations

import asyncio
from collections import Counter

from iot_simulator.cli import parse_args
from iot_simulator.runner import run
from iot_simulator.sender import REJECTED, RETRY, STORED, Outcome


def config(*argv):
    return parse_args([*argv, "--progress-interval", "0"], env={})


class Api:
    """A scripted api: `script(request_number, readings)` returns an Outcome."""

    def __init__(self, script=None):
        self.script = script or (lambda i, readings: Outcome(STORED, stored=len(readings)))
        self.requests: list[list[dict]] = []
        self.stored: Counter = Counter()  # (sensor_id, type, ts) -> times stored

    async def __call__(self, readings):
        self.requests.append(readings)
        await asyncio.sleep(0)
        outcome = self.script(len(self.requests), readings)
        if outcome.kind != RETRY:
            for r in readings[: outcome.stored]:
                self.stored[(r["sensor_id"], r["type"], r["ts"])] += 1
        return outcome


def test_flaky_api_everything_stored_once_per_point_and_retries_counted():
    # every request fails twice with a 503 before it succeeds
    attempts: Counter = Counter()

    def script(i, readings):
        key = (readings[0]["sensor_id"], readings[0]["ts"])
        attempts[key] += 1
        if attempts[key] <= 2:
            return Outcome(RETRY, reason="503", retry_after=0.001)
        return Outcome(STORED, stored=len(readings))

    api = Api(script)
    cfg = config("--devices", "7", "--count", "20", "--interval", "0", "--batch", "3",
                 "--backoff", "0.001", "--max-backoff", "0.01")
    s = asyncio.run(run(cfg, poster=api))
    assert (s.generated, s.stored, s.rejected, s.pending, s.exit_code) == (140, 140, 0, 0, 0)
    assert len(api.stored) == 140  # 140 distinct points: timestamps never collide within a device
    assert s.requests == len(api.requests) and s.errors == {"503": 2 * s.requests // 3}
    assert s.retries == 2 * 140  # each reading was resent twice
    assert {len(r) for r in api.requests} <= {1, 2, 3}


def test_batches_fill_up_and_the_rest_is_flushed_at_the_end():
    api = Api()
    s = asyncio.run(run(config("--count", "12", "--interval", "0", "--batch", "5"), poster=api))
    assert [len(r) for r in api.requests] == [5, 5, 2]
    assert s.stored == 12 and s.exit_code == 0


def test_several_types_share_a_tick_timestamp_and_count_is_per_type():
    api = Api()
    s = asyncio.run(run(config("--devices", "2", "--count", "4", "--interval", "0", "--types",
                               "temp,humidity,pressure"), poster=api))
    assert s.generated == s.stored == 2 * 4 * 3
    per_ts = Counter((sid, ts) for sid, _, ts in api.stored)
    assert set(per_ts.values()) == {3}
    assert {t for _, t, _ in api.stored} == {"temp", "humidity", "pressure"}
    assert {sid for sid, _, _ in api.stored} == {"sim-0001", "sim-0002"}


def test_rejections_are_counted_and_never_resent():
    def script(i, readings):
        if i % 2:  # every other request: a partial 422 (1 stored, the rest rejected)
            return Outcome(REJECTED, stored=1, rejected=len(readings) - 1, reason="422", message="bad")
        return Outcome(STORED, stored=len(readings))

    api = Api(script)
    s = asyncio.run(run(config("--count", "30", "--interval", "0", "--batch", "3"), poster=api))
    sent = [(r["ts"]) for req in api.requests for r in req]
    assert len(sent) == len(set(sent)) == 30  # nothing sent twice
    assert s.rejected == 5 * 2 and s.stored == 20 and s.pending == 0
    assert s.exit_code == 1


def test_unreachable_api_leaves_readings_pending_after_the_drain_timeout():
    api = Api(lambda i, readings: Outcome(RETRY, reason="connection"))
    cfg = config("--count", "3", "--interval", "0", "--drain-timeout", "0.3", "--backoff", "0.01",
                 "--max-backoff", "0.05")
    s = asyncio.run(run(cfg, poster=api))
    assert (s.generated, s.stored, s.pending, s.exit_code) == (3, 0, 3, 1)
    # every request failed (the last one may have been cut off in flight by the deadline)
    assert s.requests - 1 <= s.errors["connection"] <= s.requests and s.requests >= 3
    assert 0.3 <= s.elapsed < 2


def test_full_buffer_pauses_generation_and_nothing_is_lost():
    # the api is down for the first 0.3 s; the buffer holds 8 readings per device
    first_request_at: list[float] = []

    def script(i, readings):
        now = asyncio.get_running_loop().time()
        if not first_request_at:
            first_request_at.append(now)
        if now - first_request_at[0] < 0.3:
            return Outcome(RETRY, reason="503", retry_after=0.01)
        return Outcome(STORED, stored=len(readings))

    api = Api(script)
    cfg = config("--devices", "3", "--count", "40", "--interval", "0.002", "--buffer", "8", "--batch", "2",
                 "--backoff", "0.01", "--max-backoff", "0.05")
    s = asyncio.run(run(cfg, poster=api))
    assert s.buffer_full >= 3  # each device filled up during the outage
    assert max(len(r) for r in api.requests) <= 2
    assert (s.generated, s.stored, s.pending, s.exit_code) == (120, 120, 0, 0)
    assert len(api.stored) == 120 and set(api.stored.values()) == {1}


def test_duration_bounds_generation():
    api = Api()
    s = asyncio.run(run(config("--devices", "2", "--interval", "0.05", "--duration", "0.5"), poster=api))
    assert 2 * 5 <= s.generated <= 2 * 12
    assert s.stored == s.generated and s.exit_code == 0


def test_seed_makes_the_values_of_a_whole_run_reproducible():
    def by_sensor(*extra):
        api = Api()
        asyncio.run(run(config("--devices", "3", "--count", "15", "--interval", "0", "--types",
                               "temp,humidity", *extra), poster=api))
        out: dict = {}
        for req in api.requests:
            for r in req:
                out.setdefault((r["sensor_id"], r["type"]), []).append(r["value"])
        return out

    assert by_sensor("--seed", "99") == by_sensor("--seed", "99")
    assert by_sensor("--seed", "99") != by_sensor("--seed", "100")
    assert by_sensor() != by_sensor()
    assert by_sensor("--seed", "5", "--uniform") == by_sensor("--seed", "5", "--uniform")
