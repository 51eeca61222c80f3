"""Group commit: concurrent requests share one InfluxDB write, each answered when its batch is acked.

While `in_flight` writes are outstanding, new requests queue up; the next flush takes everything
queued (up to `max_points`) in one line-protocol body. Under light load a request is written at once;
under heavy load batches grow by themselves, so throughput scales without a fixed delay. `max_delay`
optionally holds a flush back to gather more (the latency bound); 0 flushes on the next loop turn.

When InfluxDB refuses a combined batch (400: a field-type conflict, a point outside retention), the
good points are already stored (InfluxDB 1.x writes partially) and rewriting them is idempotent, so we
re-write each request alone and bisect a refused request down to its bad readings: only those are
answered 422, everything else 201.

A write that fails on InfluxDB's side (unreachable, timeout, 5xx, its disk full) fails every request
of the batch with Unavailable (the app answers 503 + Retry-After) and is logged with InfluxDB's own
message, at most one line per kind of failure every FAILURE_LOG_EVERY_S (a thousand devices retrying
into an outage must not flood the log), then one line when writes succeed again.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from . import metrics
from .influx import DatabaseMissing, Influx, StorageFailed, Unavailable

log = logging.getLogger("iot_api.writer")

FAILURE_LOG_EVERY_S = 5.0


@dataclass
class Outcome:
    stored: int
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in request, InfluxDB's reason)


class Overloaded(Exception):
    """More points queued than API_MAX_PENDING_POINTS: answer 503 rather than grow without bound."""


@dataclass
class _Entry:
    lines: list[str]
    future: asyncio.Future


class GroupCommitWriter:
    def __init__(self, influx: Influx, max_points: int, max_delay_s: float, in_flight: int,
                 max_pending: int, enabled: bool = True, on_database_missing=None):
        self.influx = influx
        self.max_points = max_points
        self.max_delay_s = max_delay_s
        self.max_in_flight = in_flight
        self.max_pending = max_pending
        self.enabled = enabled
        self.on_database_missing = on_database_missing or (lambda: None)
        self._queue: list[_Entry] = []
        self._queued_points = 0
        self._in_flight = 0
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones
        self._failed_writes = self._failed_readings = 0  # since the last successful write
        self._failure_log = _LogThrottle()  # per kind of failure; cleared when writes succeed again
        self._overload_log = _LogThrottle()  # requests answered 503 for a full queue

    @property
    def pending_points(self) -> int:
        return self._queued_points

    async def submit(self, lines: list[str]) -> Outcome:
        """Store these lines; returns when InfluxDB acknowledged them. Raises Unavailable/Overloaded."""
        if not self.enabled:  # baseline mode for the benchmark: one write per request
            return await self._write_one(lines)
        if self._queued_points + len(lines) > self.max_pending:
            self._overloaded(len(lines))
            raise Overloaded(f"{self._queued_points} readings already waiting for InfluxDB")
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(_Entry(lines, fut))
        self._queued_points += len(lines)
        metrics.QUEUE_DEPTH.set(self._queued_points)
        self._idle.clear()
        self._schedule()
        return await fut

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every queued and in-flight write is done (graceful stop)."""
        self._schedule()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except TimeoutError:
            return False

    # -- scheduling -------------------------------------------------------------------------------
    def _schedule(self) -> None:
        if self._scheduled is not None or not self._queue or self._in_flight >= self.max_in_flight:
            return
        loop = asyncio.get_running_loop()
        if self.max_delay_s and self._queued_points < self.max_points:
            self._scheduled = loop.call_later(self.max_delay_s, self._flush)
        else:
            self._scheduled = loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = None
        if not self._queue or self._in_flight >= self.max_in_flight:
            return
        n = points = 0
        for entry in self._queue:  # whole requests, up to max_points (a bigger request goes alone)
            if n and points + len(entry.lines) > self.max_points:
                break
            n += 1
            points += len(entry.lines)
        batch, self._queue = self._queue[:n], self._queue[n:]
        self._queued_points -= points
        metrics.QUEUE_DEPTH.set(self._queued_points)
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._write_batch(batch, points))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._schedule()  # a second batch may go out while this one is in flight

    # -- writing ----------------------------------------------------------------------------------
    async def _write_batch(self, batch: list[_Entry], points: int) -> None:
        started = time.perf_counter()
        try:
            body = "".join(line for entry in batch for line in entry.lines).encode()
            status, error = await self.influx.write(body)
            if status == 204:
                metrics.FLUSHES.observe(points)
                if self._failed_writes:
                    self._recovered()
                for entry in batch:
                    _resolve(entry.future, Outcome(len(entry.lines)))
            elif len(batch) == 1:
                _resolve(batch[0].future, await self._bisect(batch[0].lines, error))
            else:
                log.warning("InfluxDB refused part of a batch; writing its requests one by one",
                            extra={"error": error, "requests": len(batch), "readings": points})
                outcomes = await asyncio.gather(*(self._write_one(e.lines) for e in batch),
                                                return_exceptions=True)
                for entry, outcome in zip(batch, outcomes, strict=True):
                    _resolve(entry.future, outcome)
        except Unavailable as exc:
            self._failed(exc, points)
            for entry in batch:
                _resolve(entry.future, exc)
        except Exception as exc:  # never leave a request hanging, whatever happened
            log.exception("unexpected error while writing a batch")
            for entry in batch:
                _resolve(entry.future, exc)
        finally:
            metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
            self._in_flight -= 1
            if not self._queue and not self._in_flight:
                self._idle.set()
            self._schedule()

    async def _write_one(self, lines: list[str]) -> Outcome:
        try:
            status, error = await self.influx.write("".join(lines).encode())
            if status == 204:
                metrics.FLUSHES.observe(len(lines))
                if self._failed_writes:
                    self._recovered()
                return Outcome(len(lines))
            return await self._bisect(lines, error)
        except Unavailable as exc:
            self._failed(exc, len(lines))
            raise

    async def _bisect(self, lines: list[str], error: str, offset: int = 0) -> Outcome:
        """InfluxDB refused some of these lines (status 400 with `error`): find which, by halves."""
        if len(lines) == 1:
            metrics.READINGS_REJECTED.labels("influxdb").inc()
            return Outcome(0, [(offset, error)])
        mid = len(lines) // 2
        outcome = Outcome(0)
        for part, start in ((lines[:mid], offset), (lines[mid:], offset + mid)):
            status, err = await self.influx.write("".join(part).encode())
            if status == 204:
                outcome.stored += len(part)
            else:
                sub = await self._bisect(part, err, start)
                outcome.stored += sub.stored
                outcome.rejected.extend(sub.rejected)
        return outcome

    def _failed(self, exc: Unavailable, readings: int) -> None:
        kind = type(exc).__name__
        metrics.WRITE_ERRORS.labels(kind).inc()
        self._failed_writes += 1
        self._failed_readings += readings
        held_back = self._failure_log.due(kind, readings)
        if held_back is not None:
            held = ({"similar_failures_not_logged": held_back[0], "their_readings": held_back[1]}
                    if held_back[0] else {})
            log.log(logging.ERROR if isinstance(exc, StorageFailed) else logging.WARNING,
                    "InfluxDB write failed: answered 503, the readings are not stored (clients resend)",
                    extra={"error": str(exc), "kind": kind, "readings": readings, **held})
        if isinstance(exc, DatabaseMissing):
            self.on_database_missing()

    def _overloaded(self, readings: int) -> None:
        """A full queue (InfluxDB slower than the load) answers 503: counted, and logged at most once
        every FAILURE_LOG_EVERY_S with how many requests were turned away since the last line."""
        metrics.READINGS_REJECTED.labels("overloaded").inc(readings)
        held_back = self._overload_log.due("overloaded", readings)
        if held_back is not None:  # this request and those held back since the last line
            log.warning("queue full (API_MAX_PENDING_POINTS): answered 503, the readings are not stored "
                        "(clients resend)", extra={"queued": self._queued_points, "limit": self.max_pending,
                                                   "requests_turned_away": held_back[0] + 1})

    def _recovered(self) -> None:
        log.info("InfluxDB writes succeed again", extra={"failed_writes": self._failed_writes,
                                                          "failed_readings": self._failed_readings})
        self._failed_writes = self._failed_readings = 0
        self._failure_log.clear()


class _LogThrottle:
    """At most one log line per key every FAILURE_LOG_EVERY_S; what it holds back in between is counted
    and handed to the next line (a thousand devices retrying into an outage must not flood the log)."""

    def __init__(self):
        self._seen: dict[str, list] = {}  # key -> [logged at, events held back, their readings]

    def due(self, key: str, readings: int) -> tuple[int, int] | None:
        """When a line is due now: (events, readings) held back since the last one. Else None, and this
        event is counted as held back."""
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < FAILURE_LOG_EVERY_S:
            seen[1] += 1
            seen[2] += readings
            return None
        self._seen[key] = [now, 0, 0]
        return (seen[1], seen[2]) if seen else (0, 0)

    def clear(self) -> None:
        self._seen.clear()


def _resolve(fut: asyncio.Future, result) -> None:
    if fut.done():
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)
