"""A whole run: build the devices, generate and send, report progress, drain, summarise.

Phases: (1) generate until every device reached --count, --duration elapsed, or a signal came;
(2) drain: senders keep retrying what is pending, up to --drain-timeout (at most SIGNAL_DRAIN_MAX after
a signal; a further signal ends it at once); (3) whatever is still in a buffer is reported as pending.
"""
from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections.abc import Callable

from .cli import SIGNAL_DRAIN_MAX, Config
from .device import Device, Poster
from .sender import HttpPoster
from .stats import RateLimitedLog, Stats, Summary
from .values import device_rng, make_generator

log = logging.getLogger("iot_simulator")


def build_devices(cfg: Config, stats: Stats, warn: RateLimitedLog) -> list[Device]:
    jitter = random.Random()  # backoff jitter: deliberately not seeded, it is not part of the data
    return [
        Device(sid, [make_generator(t, device_rng(cfg.seed, sid, t.name), cfg.uniform) for t in cfg.types],
               stats, batch=cfg.batch, buffer=cfg.buffer, backoff=cfg.backoff, max_backoff=cfg.max_backoff,
               rng=random.Random(jitter.getrandbits(64)), warn=warn, verbose=cfg.verbose)
        for sid in cfg.sensor_ids
    ]


async def run(cfg: Config, poster: Poster | None = None,
              on_ready: Callable[[], None] | None = None) -> Summary:
    """Run the simulation; `poster` replaces the HTTP sender (unit tests of the buffering logic)."""
    if poster is None:
        async with HttpPoster(cfg.url, cfg.token, cfg.timeout, cfg.connections, cfg.batch > 1) as http:
            return await _run(cfg, http, on_ready)
    return await _run(cfg, poster, on_ready)


async def _run(cfg: Config, post: Poster, on_ready) -> Summary:
    loop = asyncio.get_running_loop()
    stats = Stats()
    warn = RateLimitedLog()
    devices = build_devices(cfg, stats, warn)
    signalled = asyncio.Event()
    signals = _install_signal_handlers(loop, signalled)
    interrupted = False

    what = f"{cfg.count} ticks per device" if cfg.count else ""
    if cfg.duration:
        what += (" or " if what else "") + f"{cfg.duration:g}s"
    log.info("sending to %s: %d device%s (%s), types %s, every %gs%s, batch %d%s",
             cfg.url, cfg.devices, "s" if cfg.devices > 1 else "", _ids(cfg.sensor_ids),
             ",".join(t.name for t in cfg.types), cfg.interval, " (load mode)" if cfg.interval == 0 else "",
             cfg.batch, f", stopping after {what}" if what else ", until stopped")

    # Spread the devices' first ticks over one interval so that a thousand of them do not fire in step.
    n = len(devices)
    gen_tasks = [asyncio.create_task(d.generate(cfg.count, cfg.interval, cfg.interval * i / n))
                 for i, d in enumerate(devices)]
    send_tasks = [asyncio.create_task(d.send(post)) for d in devices]
    progress = (asyncio.create_task(_progress(stats, cfg.progress_interval))
                if cfg.progress_interval > 0 else None)
    if on_ready:
        on_ready()
    try:
        # Phase 1: generation.
        await _all_done_or_signal(gen_tasks, signalled, cfg.duration)
        interrupted = signalled.is_set()
        for t in gen_tasks:
            t.cancel()
        _raise_bug(await asyncio.gather(*gen_tasks, return_exceptions=True))

        # Phase 2: drain.
        drain = min(cfg.drain_timeout, SIGNAL_DRAIN_MAX) if interrupted else cfg.drain_timeout
        if stats.pending:
            log.info("generation %s: %d generated, %d pending; draining for up to %gs%s",
                     "interrupted" if interrupted else "finished", stats.generated, stats.pending, drain,
                     " (signal again to stop now)" if interrupted else "")
        signalled.clear()
        await _all_done_or_signal(send_tasks, signalled, drain)
        if signalled.is_set():
            interrupted = True
            log.warning("drain stopped by signal")
    finally:
        # Phase 3: whatever is still in flight or waiting is pending (not known stored).
        for t in (*gen_tasks, *send_tasks, *([progress] if progress else [])):
            t.cancel()
        results = await asyncio.gather(*gen_tasks, *send_tasks, *([progress] if progress else []),
                                       return_exceptions=True)
        for sig in signals:
            loop.remove_signal_handler(sig)
    _raise_bug(results)
    return Summary.from_stats(stats, len(devices), interrupted)


async def _all_done_or_signal(tasks: list[asyncio.Task], event: asyncio.Event, timeout: float | None) -> None:
    """Wait until every task is done, the event is set, or the timeout passes (tasks keep running)."""
    if not tasks:
        return
    waiter = asyncio.create_task(asyncio.wait(tasks))
    stopper = asyncio.create_task(event.wait())
    try:
        await asyncio.wait([waiter, stopper], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        stopper.cancel()


def _raise_bug(results) -> None:
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
            raise r


def _install_signal_handlers(loop, event: asyncio.Event) -> list[int]:
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, _on_signal, sig, event)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no such support
            pass
    return installed


def _on_signal(sig: int, event: asyncio.Event) -> None:
    log.warning("%s received", signal.Signals(sig).name)
    event.set()


async def _progress(stats: Stats, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        log.info(stats.progress_line())


def _ids(ids: list) -> str:
    if len(ids) == 1:
        return f"sensor {ids[0]}"
    return f"sensors {ids[0]}..{ids[-1]}"
