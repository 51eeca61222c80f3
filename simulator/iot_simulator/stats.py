"""Counters of a run, the progress line, the final summary and the exit status.

Counts are in readings (not requests) unless named otherwise. The invariant the tests rely on:
generated == stored + rejected + pending, at every moment.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("iot_simulator")

EXIT_OK, EXIT_NOT_STORED, EXIT_USAGE = 0, 1, 2


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    generated: int = 0
    sent: int = 0  # readings put on the wire, resends included
    retried: int = 0  # readings put on the wire again after a failed attempt
    stored: int = 0
    rejected: int = 0
    requests: int = 0
    errors: Counter = field(default_factory=Counter)  # failed requests by reason ("503", "timeout"…)
    buffer_full: int = 0  # times a device found its buffer full and paused generating
    paused: int = 0  # devices paused right now
    # for the rate of the progress line
    _last_time: float = 0.0
    _last_stored: int = 0

    @property
    def pending(self) -> int:
        return self.generated - self.stored - self.rejected

    def elapsed(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started

    def progress_line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        since = self._last_time or self.started
        rate = (self.stored - self._last_stored) / (now - since) if now > since else 0.0
        self._last_time, self._last_stored = now, self.stored
        line = (f"progress {self.elapsed(now):7.1f}s: sent {self.sent} stored {self.stored} "
                f"retried {self.retried} pending {self.pending} rate {rate:.1f}/s")
        if self.rejected:
            line += f" rejected {self.rejected}"
        if self.paused:
            line += f" paused {self.paused} (buffer full)"
        return line


@dataclass(frozen=True)
class Summary:
    generated: int
    stored: int
    rejected: int
    pending: int
    retries: int  # readings resent
    requests: int
    elapsed: float
    rate: float  # stored readings per second over the whole run
    sent: int
    errors: dict
    buffer_full: int
    devices: int
    interrupted: bool

    @classmethod
    def from_stats(cls, s: Stats, devices: int, interrupted: bool, now: float | None = None) -> Summary:
        elapsed = s.elapsed(now)
        return cls(generated=s.generated, stored=s.stored, rejected=s.rejected, pending=s.pending,
                   retries=s.retried, requests=s.requests, elapsed=round(elapsed, 3),
                   rate=round(s.stored / elapsed, 1) if elapsed > 0 else 0.0, sent=s.sent,
                   errors=dict(sorted(s.errors.items())), buffer_full=s.buffer_full, devices=devices,
                   interrupted=interrupted)

    @property
    def exit_code(self) -> int:
        # Success means every generated reading is known stored: nothing rejected, nothing in doubt.
        return EXIT_OK if self.stored == self.generated else EXIT_NOT_STORED

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["exit_code"] = self.exit_code
        return d

    def text(self) -> str:
        lines = [(f"summary: generated {self.generated}, stored {self.stored}, rejected {self.rejected}, "
                  f"pending {self.pending}; {self.retries} resent, {self.requests} requests, "
                  f"{self.devices} device{'s' if self.devices != 1 else ''}, {self.elapsed:.1f}s, "
                  f"{self.rate:.1f} readings/s")]
        if self.errors:
            lines.append("failed requests (retried): " + ", ".join(f"{k} x{v}" for k, v in self.errors.items()))
        if self.buffer_full:
            lines.append(f"buffer full {self.buffer_full} times: generation paused until the api "
                         "accepted the backlog (no reading was dropped)")
        if self.interrupted:
            lines.append("interrupted: generation stopped early")
        if self.exit_code:
            lines.append(f"NOT ALL STORED: {self.rejected} rejected by the api, {self.pending} still "
                         "pending (not known stored)")
        else:
            lines.append("all generated readings stored")
        return "\n".join(lines)


class RateLimitedLog:
    """Log a message at most once per `every` seconds per key, with how many were held back.

    A thousand devices hitting the same 503 must not print a thousand lines; the first one says what
    happened, the following ones say how often.
    """

    def __init__(self, every: float = 10.0, clock=time.monotonic):
        self.every = every
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: Counter = Counter()

    def __call__(self, level: int, key: str, message: str) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._held[key] += 1
            return False
        held = self._held.pop(key, 0)
        self._last[key] = now
        log.log(level, message + (f" (and {held} more like it)" if held else ""))
        return True
