"""The district processor's window, pure (no I/O, no clock of its own): per district and type, each
sensor's latest value within a sliding window of event time, and the aggregate of those values.

Event time: a reading is placed by its own `ts`, never by when it arrived. The window ends at the
watermark, the newest event time seen (`add`'s `now_ns` caps it: a device whose clock runs ahead
cannot push the watermark past the wall clock and empty every district), and covers the WINDOW
nanoseconds before it: (watermark - window, watermark]. Time therefore advances only with readings:
a district whose stations stopped empties as the other districts' readings move the watermark on,
and a replay (a backlog, the warm-up) gives the same windows as the live stream did.

Out of order: because every aggregate is recomputed from the state (no pane is ever closed), any
reading still inside the window is used; a reading older than its sensor's latest value of that type
is `STALE` (that sensor's latest value is already known), one older than the window is `LATE`. So the
outcome does not depend on arrival order: adding the same readings in any order gives the same state,
which is what lets the warm-up from InfluxDB and the live stream be merged in whatever order they come.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from iot_api.timefmt import NS_PER_S, format_rfc3339

ACCEPTED, STALE, LATE = "accepted", "stale", "late"

Key = tuple[str, str]  # (district, type)


@dataclass(frozen=True)
class Aggregate:
    district: str
    type: str
    mean: float
    min: float
    max: float
    n: int          # sensors in the window, each counted once
    window_s: float
    ts_ns: int      # the newest reading's event time in the window

    def payload(self) -> dict:
        """The `agg/{district}/{type}` message (docs/mqtt.md)."""
        return {"district": self.district, "type": self.type, "mean": self.mean, "min": self.min,
                "max": self.max, "n": self.n, "window_s": self.window_s, "ts": format_rfc3339(self.ts_ns)}


class Windows:
    """Every district's and type's window, one shared watermark."""

    def __init__(self, window_ns: int):
        if window_ns <= 0:
            raise ValueError("the window must be positive")
        self.window_ns = window_ns
        self.watermark_ns: int | None = None
        # (sensor_id, type) -> (district, ts_ns, value): one entry per sensor and type, so a sensor counts
        # once, and a sensor that moves to another district leaves the old one.
        self._latest: dict[tuple[str, str], tuple[str, int, float]] = {}

    def start_ns(self) -> int | None:
        """Readings at or before this are outside the window (None: nothing seen yet)."""
        return None if self.watermark_ns is None else self.watermark_ns - self.window_ns

    def add(self, district: str, sensor_id: str, kind: str, ts_ns: int, value: float,
            now_ns: int | None = None) -> str:
        """Take one reading; ACCEPTED, STALE or LATE. NOW_NS (the wall clock) caps the watermark."""
        start = self.start_ns()
        if start is not None and ts_ns <= start:
            return LATE
        key = (sensor_id, kind)
        old = self._latest.get(key)
        if old is not None and ts_ns < old[1]:
            return STALE
        # Equal time: the same point again (a redelivery) or its correction; the newer message wins,
        # as it does in storage, where the same (series, time) overwrites.
        self._latest[key] = (district, ts_ns, value)
        mark = ts_ns if now_ns is None else min(ts_ns, now_ns)
        if self.watermark_ns is None or mark > self.watermark_ns:
            self.watermark_ns = mark
        return ACCEPTED

    def evict(self) -> int:
        """Forget the values that left the window; how many."""
        start = self.start_ns()
        if start is None:
            return 0
        gone = [k for k, (_, ts, _) in self._latest.items() if ts <= start]
        for k in gone:
            del self._latest[k]
        return len(gone)

    def aggregates(self) -> dict[Key, Aggregate]:
        """The aggregate of every district and type that has at least one sensor in the window."""
        self.evict()
        groups: dict[Key, list[tuple[int, float]]] = {}
        for (_, kind), (district, ts, value) in self._latest.items():
            groups.setdefault((district, kind), []).append((ts, value))
        window_s = self.window_ns / NS_PER_S
        window_s = int(window_s) if window_s.is_integer() else window_s
        out = {}
        for (district, kind), items in groups.items():
            values = [v for _, v in items]
            # fsum: correctly rounded whatever the order, so the same values give the same mean (no
            # spurious republication when only the dict order changed).
            out[(district, kind)] = Aggregate(
                district=district, type=kind, mean=math.fsum(values) / len(values), min=min(values),
                max=max(values), n=len(values), window_s=window_s, ts_ns=max(ts for ts, _ in items))
        return out

    def __len__(self) -> int:
        return len(self._latest)


def changes(published: dict[Key, Aggregate], current: dict[Key, Aggregate]) -> tuple[list[Aggregate], list[Key]]:
    """What to send after PUBLISHED, now that the windows hold CURRENT: the aggregates that differ
    (new or changed) and the keys that emptied (their retained message is cleared)."""
    send = [agg for key, agg in sorted(current.items()) if published.get(key) != agg]
    clear = sorted(key for key in published if key not in current)
    return send, clear
