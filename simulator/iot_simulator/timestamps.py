"""Reading timestamps: RFC 3339 with nanoseconds, strictly increasing per device.

A point in InfluxDB is (sensor_id, type, time): two readings of one device at the same instant would be
one point, the second silently overwriting the first. Nanosecond fractions plus a strictly increasing
clock per device make every generated reading a distinct point, so "stored == generated" is exact.
"""
from __future__ import annotations

import time
from collections.abc import Callable

NS_PER_S = 1_000_000_000


class DeviceClock:
    """Wall-clock time in ns, never equal to or before the previous value it returned."""

    __slots__ = ("_now", "last")

    def __init__(self, now_ns: Callable[[], int] = time.time_ns):
        self._now = now_ns
        self.last = 0

    def next_ns(self) -> int:
        t = self._now()
        if t <= self.last:  # same tick of a coarse clock, load mode, or the wall clock stepped back
            t = self.last + 1
        self.last = t
        return t


def format_ns(ns: int) -> str:
    """`2026-11-22T10:00:00.123456789Z`: always 9 fraction digits, so the full precision travels."""
    secs, frac = divmod(ns, NS_PER_S)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"
