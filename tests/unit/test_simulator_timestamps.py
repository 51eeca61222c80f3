"""Simulator timestamps: strictly increasing per device, RFC 3339 with nanosecond fractions."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from iot_simulator.timestamps import DeviceClock, format_ns

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$")


def test_strictly_increasing_even_when_the_clock_stands_still_or_steps_back():
    readings = iter([1_000, 1_000, 1_000, 999, 500, 2_000, 2_000])
    clock = DeviceClock(lambda: next(readings))
    got = [clock.next_ns() for _ in range(7)]
    assert got == [1_000, 1_001, 1_002, 1_003, 1_004, 2_000, 2_001]


def test_real_clock_many_readings_in_a_tight_loop_never_collide():
    clock = DeviceClock()
    values = [clock.next_ns() for _ in range(50_000)]
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    texts = [format_ns(v) for v in values]
    assert len(set(texts)) == len(texts)  # distinct on the wire too: the fraction carries every ns


def test_format_has_nine_fraction_digits_and_is_utc():
    ns = 1_795_773_600_123_456_789  # 2026-11-27T10:00:00.123456789Z
    text = format_ns(ns)
    assert TS_RE.match(text)
    assert text == "2026-11-27T10:00:00.123456789Z"
    assert format_ns(1_795_773_600_000_000_000) == "2026-11-27T10:00:00.000000000Z"
    assert format_ns(0) == "1970-01-01T00:00:00.000000000Z"
    whole = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    assert int(whole.timestamp()) * 1_000_000_000 + 123_456_789 == ns


def test_the_api_parses_our_timestamps_back_to_the_same_nanosecond():
    timefmt = pytest.importorskip("iot_api.timefmt")
    clock = DeviceClock()
    for _ in range(1000):
        ns = clock.next_ns()
        assert timefmt.parse_rfc3339(format_ns(ns)) == ns
