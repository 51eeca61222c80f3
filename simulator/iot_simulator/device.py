"""One simulated device: it generates readings into a bounded buffer and sends them from there.

Two coroutines per device share the buffer. The generator appends a tick's readings (one per type, same
timestamp); the sender posts up to `batch` readings from the front and removes them only once the api
has answered for them (stored or definitively rejected). A failed request leaves them in place and is
retried after a backoff, so nothing is dropped. When the buffer is full the generator waits: a reading
that is never generated cannot be lost, which keeps `stored == generated` exact.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from itertools import islice

from .sender import RETRY, Outcome, backoff_delay
from .stats import RateLimitedLog, Stats
from .timestamps import DeviceClock, format_ns

log = logging.getLogger("iot_simulator")

Poster = Callable[[list[dict]], Awaitable[Outcome]]


class Device:
    def __init__(self, sensor_id: str | int, generators: list, stats: Stats, *, batch: int = 1,
                 buffer: int = 1000, backoff: float = 0.5, max_backoff: float = 15.0,
                 clock: DeviceClock | None = None, rng: random.Random | None = None,
                 warn: RateLimitedLog | None = None, verbose: bool = False):
        self.sensor_id = sensor_id
        self.generators = generators  # one value generator per type, each with .spec.name
        self.stats = stats
        self.batch = batch
        self.capacity = buffer
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.clock = clock or DeviceClock()
        self.rng = rng or random.Random()  # jitter only; values have their own seeded generators
        self.warn = warn or RateLimitedLog()
        self.verbose = verbose
        self.buffer: deque[dict] = deque()
        self.done = False  # generation is over: flush what is left even if it is less than a batch
        self._data = asyncio.Event()
        self._space = asyncio.Event()
        self._sent_once = 0  # readings at the front of the buffer already sent at least once

    # -- generating ------------------------------------------------------------------------------
    async def generate(self, count: int | None, interval: float, phase: float = 0.0) -> None:
        """`count` ticks (None: until cancelled), one every `interval` s (0: as fast as the buffer
        allows), the first after `phase` s so that many devices do not all fire at once."""
        loop = asyncio.get_running_loop()
        per_tick = len(self.generators)
        ticks = 0
        next_at = loop.time() + phase
        try:
            while count is None or ticks < count:
                if interval > 0:
                    delay = next_at - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if len(self.buffer) + per_tick > self.capacity:
                    await self._wait_for_space(per_tick)
                    next_at = loop.time()  # resume now; do not burst to catch up on the paused ticks
                self._tick()
                ticks += 1
                if interval > 0:
                    next_at += interval
                    now = loop.time()
                    if next_at < now - interval:  # fell behind (stalled loop, suspended host): skip,
                        next_at = now  # rather than burst out the missed ticks with fresh timestamps
                else:
                    await asyncio.sleep(0)  # load mode: let the senders (and other devices) run
        finally:
            self.done = True
            self._data.set()

    def _tick(self) -> None:
        ts = format_ns(self.clock.next_ns())
        sid = self.sensor_id
        for gen in self.generators:
            self.buffer.append({"ts": ts, "type": gen.spec.name, "value": gen.next(), "sensor_id": sid})
        self.stats.generated += len(self.generators)
        if len(self.buffer) >= self.batch:
            self._data.set()

    async def _wait_for_space(self, needed: int) -> None:
        self.stats.buffer_full += 1
        self.stats.paused += 1
        self.warn(logging.WARNING, "buffer-full",
                  f"buffer full on device {self.sensor_id} ({self.capacity} readings pending): "
                  "generation paused until the api accepts the backlog (nothing is dropped)")
        try:
            while len(self.buffer) + needed > self.capacity:
                self._space.clear()
                await self._space.wait()
        finally:
            self.stats.paused -= 1

    # -- sending ---------------------------------------------------------------------------------
    async def send(self, post: Poster) -> None:
        """Send until generation is over and the buffer is empty (the caller cancels it at the end of
        the drain time; readings still here then are counted as pending)."""
        attempt = 0
        buf = self.buffer
        stats = self.stats
        while True:
            while not (len(buf) >= self.batch or (self.done and buf)):
                if self.done:
                    return
                self._data.clear()
                await self._data.wait()
            k = min(self.batch, len(buf))
            chunk = list(islice(buf, k))
            resent = min(k, self._sent_once)
            self._sent_once = max(self._sent_once, k)
            stats.requests += 1
            stats.sent += k
            stats.retried += resent
            outcome = await post(chunk)
            if outcome.kind == RETRY:
                stats.errors[outcome.reason] += 1
                delay = backoff_delay(attempt, self.backoff, self.max_backoff, self.rng, outcome.retry_after)
                attempt += 1
                self.warn(logging.WARNING, f"retry-{outcome.reason}",
                          f"api did not store {k} reading(s) of {self.sensor_id} "
                          f"({outcome.reason}: {outcome.message or 'no message'}); retrying with backoff")
                if self.verbose:
                    log.info("%s: %s, retry %d in %.2fs", self.sensor_id, outcome.reason, attempt, delay)
                await asyncio.sleep(delay)
                continue
            # The api has answered for these readings, for good: they leave the buffer.
            attempt = 0
            for _ in range(k):
                buf.popleft()
            self._sent_once -= k
            stats.stored += outcome.stored
            stats.rejected += outcome.rejected
            if outcome.rejected:
                self.warn(logging.ERROR, f"rejected-{outcome.reason}-{outcome.message}",
                          f"api rejected {outcome.rejected} reading(s) of {self.sensor_id} "
                          f"(HTTP {outcome.reason}): {outcome.message or 'no message'}; not retried")
            elif self.verbose:
                log.info("%s: stored %d", self.sensor_id, outcome.stored)
            self._space.set()
