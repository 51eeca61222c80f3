"""Entry point: `python -m iot_device [run|status|rejected] [--once] [flags]` (see --help).

`run` has two loops that never wait on each other: the sampler (main thread) reads the temperature
every interval and commits it to the queue; the sender (a thread) delivers the queue to the api and
backs off on failures. So sampling keeps its pace whatever the network does.

Exit status: 0 done (SIGTERM included), 2 bad settings or unusable queue file, and with --once:
1 no reading could be taken, 3 readings are still queued (delivery failed; they go next time).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence

from .config import ConfigError, Settings, load
from .queue import Queue, QueueClosed, QueueError
from .sender import AUTH, RETRY, Client, Outcome, Sender, backoff_delay
from .sensor import SensorError, take_reading

log = logging.getLogger("iot_device")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load(argv)
    except ConfigError as exc:
        print(f"iot-device: error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    try:
        if settings.command == "run":
            queue = Queue(settings.queue_path, settings.max_queue)
        else:
            queue = Queue(settings.queue_path, readonly=True)
    except QueueError as exc:
        print(f"iot-device: error: {exc}", file=sys.stderr)
        return 2
    if settings.command == "status":
        print(json.dumps(queue.stats(), indent=2))
        return 0
    if settings.command == "rejected":
        print(json.dumps(queue.rejected_rows(settings.limit), indent=2))
        return 0

    client = Client(settings.data_url, settings.timeout, settings.token, settings.token_file)
    agent = Agent(settings, queue, Sender(queue, client, settings.batch))
    return agent.once() if settings.once else agent.run()


class Agent:
    def __init__(self, settings: Settings, queue: Queue, sender: Sender):
        self.s = settings
        self.queue = queue
        self.sender = sender
        self.stop = threading.Event()
        self.wake = threading.Event()  # set when a reading is queued: the idle sender sends it now
        self.failures = 0              # consecutive failed deliveries, for the backoff
        self.sensor_failing = False

    # -- sampling --------------------------------------------------------------------------------
    def sample(self) -> bool:
        """Take one reading and commit it to the queue. Never raises: a bad moment is logged."""
        s = self.s
        try:
            reading = take_reading(s.temp_path, s.sensor_id, s.type)
        except SensorError as exc:
            log.error("%s", exc)
            if not self.sensor_failing:
                self.sensor_failing = True
                self._state(last_sensor_error=str(exc), last_sensor_error_at=_now())
            return False
        try:
            dropped = self.queue.enqueue(reading)
        except QueueClosed:
            return False
        except sqlite3.Error as exc:  # disk full, SD card failing: nothing else can keep it
            log.error("could not queue the reading ts=%s value=%r (it is lost): %s",
                      reading["ts"], reading["value"], exc)
            return False
        if self.sensor_failing:
            self.sensor_failing = False
            log.info("temperature readable again from %s", s.temp_path)
            self._state(last_sensor_error=None, last_sensor_error_at=None)
        if dropped:
            log.error("queue full (DEVICE_MAX_QUEUE=%d): dropped the %d oldest reading(s) to keep the newest",
                      s.max_queue, dropped)
        log.debug("queued reading ts=%s value=%r", reading["ts"], reading["value"])
        self.wake.set()
        return True

    # -- delivering --------------------------------------------------------------------------------
    def deliver(self) -> Outcome | None:
        """Send batches until the queue is empty (None) or an attempt fails (its Outcome)."""
        while not self.stop.is_set():
            step = self.sender.step()
            if step.sent:
                log.info("sent %d reading(s)", step.sent)
            if step.sent or step.rejected:
                if self.failures:
                    log.info("delivering again after %d failed attempt(s)", self.failures)
                    self._state(consecutive_failures=None)
                self.failures = 0
            if step.progress:
                continue
            if step.outcome is None:
                return None
            self.failures += 1
            return step.outcome
        return None

    def _report_failure(self, outcome: Outcome, delay: float | None) -> None:
        later = f"retrying in {delay:.1f} s" if delay is not None else "they go next time"
        if outcome.kind == AUTH:
            log.error("api refused the token (%s): readings kept; set a valid token in DEVICE_TOKEN_FILE "
                      "(re-read when it changes); %s", outcome.message, later)
        elif outcome.kind == RETRY:
            log.warning("delivery failed (%s): readings kept, %s", outcome.message, later)
        else:
            log.error("unexpected answer from %s (%s): readings kept, %s; check DEVICE_API_URL",
                      self.s.data_url, outcome.message, later)
        self._state(last_error=outcome.message, last_error_at=_now(), consecutive_failures=self.failures)

    def _send_loop(self) -> None:
        while not self.stop.is_set():
            self.wake.clear()  # before looking at the queue: a reading queued from now on wakes us
            try:
                outcome = self.deliver()
            except QueueClosed:
                return
            except Exception as exc:  # noqa: BLE001 - the thread must survive anything; say what it was
                self.failures += 1
                outcome = Outcome(RETRY, None, f"{type(exc).__name__}: {exc}")
            if outcome is None:
                self.wake.wait(timeout=60)
                continue
            delay = backoff_delay(self.failures, self.s.backoff_min, self.s.backoff_max)
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, self.s.backoff_max))
            try:
                self._report_failure(outcome, delay)
            except QueueClosed:
                return
            self.stop.wait(delay)  # not `wake`: new readings must not cut a backoff short

    # -- modes -------------------------------------------------------------------------------------
    def run(self) -> int:
        def on_signal(signum, frame):  # only sets flags: a transaction in progress finishes normally
            self.stop.set()
            self.wake.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        s = self.s
        log.info("started: sensor_id=%s type=%s every %gs from %s, queue %s (%d queued), api %s",
                 s.sensor_id, s.type, s.interval, s.temp_path, s.queue_path, self.queue.count(), s.data_url)
        self._state(sensor_id=s.sensor_id, type=s.type, api_url=s.api_url, started_at=_now())
        sender = threading.Thread(target=self._send_loop, name="sender", daemon=True)
        sender.start()

        next_at = time.monotonic()
        while not self.stop.is_set():
            self.sample()
            next_at += s.interval
            now = time.monotonic()
            if next_at <= now:  # fell behind (suspend, slow disk): skip the missed slots, no burst
                next_at += ((now - next_at) // s.interval + 1) * s.interval
            self.stop.wait(next_at - now)

        # A sender in the middle of a request holds no lock; give it a moment to record a 201, then
        # close (which waits for any transaction in progress). Unacknowledged readings stay queued.
        sender.join(timeout=min(2.0, s.timeout))
        queued = self.queue.count()
        self.queue.close()
        log.info("stopped: %d reading(s) queued", queued)
        return 0

    def once(self) -> int:
        took = self.sample()
        try:
            outcome = self.deliver()
            if outcome is not None:
                self._report_failure(outcome, None)
        finally:
            left = self.queue.count()
            self.queue.close()
        if not took:
            return 1
        return 0 if left == 0 else 3

    def _state(self, **values) -> None:
        try:
            self.queue.set_state(**values)
        except sqlite3.Error as exc:
            log.warning("could not record state for `status`: %s", exc)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- logging: one line per event on stderr (journald's input under systemd) -------------------------
class _OneLine(logging.Formatter):
    def format(self, record):
        return super().format(record).replace("\n", " | ")


_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _Journal(_OneLine):
    # journald reads a "<N>" prefix as the syslog priority (SyslogLevelPrefix=yes, the default), so
    # `journalctl -p err -u iot-device` finds the errors; it adds the time and unit name itself.
    def format(self, record):
        return f"<{_PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def _stderr_is_journal() -> bool:
    # systemd sets JOURNAL_STREAM=dev:ino of the stream it connected; check it is still our stderr.
    try:
        dev, ino = (int(x) for x in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if _stderr_is_journal():
        handler.setFormatter(_Journal("%(message)s"))
    else:
        fmt = _OneLine("%(asctime)s.%(msecs)03dZ iot-device %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        fmt.converter = time.gmtime
        handler.setFormatter(fmt)
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


if __name__ == "__main__":
    sys.exit(main())
