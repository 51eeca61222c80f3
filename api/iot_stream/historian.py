"""The historian: MQTT -> InfluxDB, a message acknowledged to the broker only once InfluxDB stored it.

    iot/{district}/{sensor_id}/{type}  a reading (iot_api.readings' rules, `ts` required, topic = payload)
    agg/{district}/{type}              an aggregate of the processor, measurement `district`

Persistent session (fixed client id), QoS 1, paho's manual acknowledgement. A message's PUBACK goes
out only after the InfluxDB write holding its point answered 204, so a crash anywhere loses nothing:
the broker redelivers what was not acknowledged, and a redelivered reading is the same point
(measurement, tags, time) as its first copy, so it overwrites itself instead of counting twice.

Threads. paho's network thread (loop_start) runs the callbacks; on_message only queues the message
with the number of the connection it came on (`generation`). The main thread validates, batches,
writes and acknowledges. `client.ack()` is called from the main thread under `_lock`, which
on_connect and on_disconnect also take to change the generation: a PUBACK is queued only for a
message of the current connection. A message id is only meaningful on its own connection; after a
reconnect the broker redelivers the unacknowledged messages (DUP) and acking an old id there is
wrong (paho also drops queued, unsent packets on reconnect). The old copy of a redelivered message
is still written with its batch (harmless) and only the new copy is acknowledged.

Invalid messages are acknowledged (redelivery would not make them valid), counted, and published to
`deadletter/{topic}`; their PUBACK waits until the broker took the dead letter. A 400 from InfluxDB
(some points refused: type conflict, beyond retention) is bisected to find the refused lines, which
are dead-lettered; the rest is acknowledged. Anything a retry may fix (no answer, 5xx, database or
retention policy missing, credentials refused) keeps the batch and retries with a capped backoff:
nothing is acknowledged, the broker keeps the rest (max_inflight_messages bounds what we hold).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass

import orjson
from iot_api import config as api_config
from iot_api.readings import Limits, check_type
from iot_api.timefmt import parse_rfc3339

from . import mqtt, reading
from .influx_write import InfluxWriter, Unavailable
from .reading import Invalid

log = logging.getLogger("iot_stream.historian")

DEFAULT_CLIENT_ID = "iot-historian"
SUBSCRIPTIONS = [("iot/#", 1), ("agg/#", 1)]
AGG_MEASUREMENT = "district"  # docs/mqtt.md, Storage
HEARTBEAT_FILE = "/tmp/iot-historian.heartbeat"
HEARTBEAT_EVERY_S = 1.0
MAX_PAYLOAD = 65_536        # a reading is ~100 bytes; anything this large is not one (and is not parsed)
DEADLETTER_TEXT_MAX = 4096  # of an oversized payload, the dead letter keeps this much text
STOP_GRACE_S = 5.0          # on SIGTERM, how long the last batch may wait for InfluxDB (Docker gives 10 s)
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 5.0
LOG_EVERY_S = 30.0          # a failure that lasts is logged at most this often
DEADLETTER_WAIT_S = 10.0    # how long a flush waits for the broker to take its dead letters


@dataclass(frozen=True)
class Settings:
    broker: mqtt.BrokerSettings
    batch_max: int
    batch_ms: int
    heartbeat_file: str
    influxdb_url: str
    influxdb_db: str
    influxdb_rp: str
    influxdb_user: str | None
    influxdb_password: str | None
    influxdb_timeout_s: float
    limits: Limits


def load_settings(environ=os.environ) -> Settings:
    """Every setting checked; a bad one raises api_config.ConfigError or mqtt.SettingsError (one line).
    The INFLUXDB_* and API_* reading limits are the api's own (iot_api.config): one reading rule."""
    api = api_config.load(environ)
    broker = mqtt.broker_settings(DEFAULT_CLIENT_ID, environ)
    return Settings(
        broker=broker,
        batch_max=api_config._int(environ, "HISTORIAN_BATCH_MAX", 1000, 1, 100_000),
        batch_ms=api_config._int(environ, "HISTORIAN_BATCH_MS", 200, 1, 60_000),
        heartbeat_file=environ.get("HISTORIAN_HEARTBEAT_FILE", "").strip() or HEARTBEAT_FILE,
        influxdb_url=api.influxdb_url, influxdb_db=api.influxdb_db, influxdb_rp=api.influxdb_rp,
        influxdb_user=api.influxdb_user, influxdb_password=api.influxdb_password,
        influxdb_timeout_s=api.influxdb_timeout_s,
        limits=Limits(max_batch=1, min_ts_ns=api.min_ts_ns, max_future_ns=api.max_future_ns,
                      retention_ns=api.retention_ns, measurement=api.measurement),
    )


def reading_line(topic: str, payload: bytes, limits: Limits) -> str:
    """The line protocol of a reading on TOPIC (reading.py: the api's rules plus MQTT's). Raises Invalid."""
    return reading.parse(topic, payload, limits)[0]


def aggregate_line(topic: str, payload: bytes, limits: Limits) -> str:
    """The line protocol of the processor's aggregate on agg/{district}/{type}. Raises Invalid."""
    parts = topic.split("/")
    if len(parts) != 3 or not all(parts):
        raise Invalid("topic must be agg/{district}/{type}")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"malformed JSON: {exc}") from None
    if type(doc) is not dict:
        raise Invalid("payload must be an aggregate object")
    problems = []

    def bad(field: str, message: str) -> None:
        problems.append({"index": None, "field": field, "message": message})

    district, kind = doc.get("district"), doc.get("type")
    if type(district) is not str or not reading.DISTRICT_RE.fullmatch(district):
        bad("district", "must be a lowercase slug (q01..q20, or a commune), as in the readings' topics")
    elif district != parts[1]:
        bad("district", f"differs from the topic's district {parts[1]!r}")
    try:
        check_type(kind)
        if kind != parts[2]:
            bad("type", f"differs from the topic's type {parts[2]!r}")
    except ValueError as exc:
        bad("type", str(exc))
    for field in ("mean", "min", "max"):
        v = doc.get(field)
        if type(v) not in (int, float) or v != v or v in (float("inf"), float("-inf")):
            bad(field, "must be a finite number")
    n = doc.get("n")
    if type(n) is not int or not 0 <= n < 2**63:
        bad("n", "must be a non-negative integer")
    ns = None
    ts = doc.get("ts")
    if type(ts) is not str:
        bad("ts", "is required: an RFC 3339 string")
    else:
        try:
            ns = parse_rfc3339(ts)
        except ValueError as exc:
            bad("ts", str(exc))
        else:
            now = time.time_ns()
            if ns < limits.min_ts_ns or (limits.retention_ns and ns < now - limits.retention_ns):
                bad("ts", "is older than the database keeps")
            elif ns > now + limits.max_future_ns:
                bad("ts", "is in the future (API_MAX_FUTURE)")
    if problems:
        raise Invalid("the aggregate is invalid", problems)
    return (f"{AGG_MEASUREMENT},district={district},type={kind} max={float(doc['max'])!r},"
            f"mean={float(doc['mean'])!r},min={float(doc['min'])!r},n={n}i {ns}\n")


class _Pending:
    """A received message not yet acknowledged: its connection, id, QoS, topic and payload."""

    __slots__ = ("generation", "mid", "qos", "topic", "payload", "aggregate")

    def __init__(self, generation: int, mid: int, qos: int, topic: str, payload: bytes):
        self.generation, self.mid, self.qos, self.topic, self.payload = generation, mid, qos, topic, payload
        self.aggregate = topic.startswith("agg/")


class _Batch:
    def __init__(self):
        # One line per point: a redelivered copy of a message already in the batch adds its ack, not a
        # second line (insertion order kept: the write is in arrival order).
        self.lines: dict[str, list[_Pending]] = {}
        self.letters: list[tuple[_Pending, object]] = []  # dead-lettered: (message, its publish's info)
        self.nothing: list[_Pending] = []  # nothing to store (a cleared aggregate): acked with the batch
        self.size = 0
        self.started = 0.0


class _Throttle:
    """True at most once per `every` seconds; counts what it held back."""

    def __init__(self, every: float):
        self.every, self.last, self.held = every, -1e18, 0

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            return True
        self.held += 1
        return False


class Historian:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.stopping = threading.Event()
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()  # generation/connected, and every ack (see the module's docstring)
        self.generation = 0
        self.connected = False
        self.subscribed = False
        self.failing_since: float | None = None
        self.stats = dict.fromkeys(("received", "redelivered", "readings_stored", "aggregates_stored", "aggregates_cleared",
                                    "deadlettered", "acked", "stale_acks_skipped", "batches", "write_failures",
                                    "connects", "unacked_at_stop"), 0)
        self._last_beat = 0.0
        self._connect_log = _Throttle(LOG_EVERY_S)
        self._write_log = _Throttle(LOG_EVERY_S)
        self.writer = InfluxWriter(settings.influxdb_url, settings.influxdb_db, settings.influxdb_rp,
                                   settings.influxdb_user, settings.influxdb_password, settings.influxdb_timeout_s)
        self.client = mqtt.make_client(settings.broker)
        self.client.manual_ack_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # -- paho's network thread -----------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if self._connect_log.ready():
                log.error("the broker refused the connection: %s (user %s; retrying)", reason_code,
                          self.settings.broker.username)
            return
        with self._lock:
            self.generation += 1
            self.connected = True
        self.stats["connects"] += 1
        log.info("connected to the broker (session present: %s)", flags.session_present)
        if flags.session_present:
            self.subscribed = True  # the broker kept our subscriptions and queued what came meanwhile
        else:
            client.subscribe(SUBSCRIPTIONS)

    def _on_connect_fail(self, client, userdata) -> None:
        if self._connect_log.ready():
            log.warning("cannot reach the broker at %s:%d (retrying)", self.settings.broker.host, self.settings.broker.port)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("the broker refused a subscription (ACL?): %s", ", ".join(refused))
        self.subscribed = not refused

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self.generation += 1  # ids of the connection that ended must not be acknowledged any more
            self.connected = False
        if not self.stopping.is_set() and self._connect_log.ready():
            log.warning("disconnected from the broker: %s (reconnecting)", reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        self.queue.put((self.generation, msg))

    # -- the main thread -------------------------------------------------------------------------
    def run(self) -> int:
        s = self.settings
        self.client.connect_async(s.broker.host, s.broker.port, s.broker.keepalive)
        self.client.loop_start()
        batch = _Batch()
        batch_s, batch_max = s.batch_ms / 1000, s.batch_max
        get = self.queue.get
        try:
            while not self.stopping.is_set():
                wait = batch.started + batch_s - time.monotonic() if batch.size else HEARTBEAT_EVERY_S
                if wait > 0:
                    try:
                        self._take(batch, get(timeout=min(wait, HEARTBEAT_EVERY_S)))
                        while batch.size < batch_max:  # what has arrived meanwhile, without waiting
                            self._take(batch, self.queue.get_nowait())
                    except queue.Empty:
                        pass
                if batch.size and (batch.size >= batch_max or time.monotonic() >= batch.started + batch_s):
                    self._flush(batch)
                    batch = _Batch()
                self._beat()
            # SIGTERM: take nothing more (the broker keeps it for our session); store and ack this batch.
            if batch.size and not self._flush(batch, give_up_at=time.monotonic() + STOP_GRACE_S):
                self.stats["unacked_at_stop"] = batch.size
                log.warning("stopping with %d messages unacknowledged (InfluxDB unavailable): the broker "
                            "redelivers them to the next historian", batch.size)
        finally:
            self.client.disconnect()  # queued after the PUBACKs: they go out first
            self.client.loop_stop()
            self.writer.close()
            self._beat(force=True)
        log.info("stopped: %s", json.dumps(self.stats))
        return 0

    def _take(self, batch: _Batch, item) -> None:
        generation, msg = item
        self.stats["received"] += 1
        self.stats["redelivered"] += msg.dup
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # paho raises on access; mosquitto refuses such topics anyway
            topic = msg._topic.decode(errors="replace")
        pending = _Pending(generation, msg.mid, msg.qos, topic, msg.payload)
        if not batch.size:
            batch.started = time.monotonic()
        batch.size += 1
        try:
            if len(msg.payload) > MAX_PAYLOAD:
                raise Invalid(f"payload of {len(msg.payload)} bytes exceeds {MAX_PAYLOAD}")
            if pending.aggregate and not msg.payload:
                # The processor clears an emptied district's retained aggregate with an empty payload:
                # no data in the window now, nothing to store (the last stored aggregate says when).
                self.stats["aggregates_cleared"] += 1
                batch.nothing.append(pending)
                return
            if pending.aggregate:
                line = aggregate_line(topic, msg.payload, self.settings.limits)
            elif topic.startswith("iot/"):
                line = reading_line(topic, msg.payload, self.settings.limits)
            else:
                raise Invalid("not a topic of the historian (iot/# or agg/#)")
        except Invalid as exc:
            batch.letters.append((pending, self._dead_letter(pending, exc.error, exc.problems)))
            return
        except Exception as exc:  # noqa: BLE001 - a message must never stop the historian
            log.exception("unexpected error on a message of %s", topic)
            batch.letters.append((pending, self._dead_letter(pending, f"internal error: {exc!r}", [])))
            return
        batch.lines.setdefault(line, []).append(pending)

    def _dead_letter(self, pending: _Pending, error: str, problems: list[dict]):
        self.stats["deadlettered"] += 1
        text = pending.payload.decode("utf-8", errors="replace")
        if len(pending.payload) > MAX_PAYLOAD:
            text = text[:DEADLETTER_TEXT_MAX]
        body = orjson.dumps({"topic": pending.topic, "payload": text, "error": error, "problems": problems})
        return self.client.publish(f"deadletter/{pending.topic}", body, qos=1)

    def _flush(self, batch: _Batch, give_up_at: float | None = None) -> bool:
        """Write BATCH, then acknowledge it; False if InfluxDB stayed unavailable past GIVE_UP_AT (or
        SIGTERM's grace): then nothing is acknowledged."""
        lines = list(batch.lines)
        refused: dict[str, str] = {}
        if lines:
            delay = BACKOFF_MIN_S
            while True:
                try:
                    refused = self._store(lines)
                    break
                except Unavailable as exc:
                    self.stats["write_failures"] += 1
                    if self.failing_since is None:
                        self.failing_since = time.monotonic()
                    if self._write_log.ready():
                        log.warning("%s; %d messages held unacknowledged, retrying (failing for %.0f s)",
                                    exc, batch.size, time.monotonic() - self.failing_since)
                    if give_up_at is None and self.stopping.is_set():
                        give_up_at = time.monotonic() + STOP_GRACE_S
                    if give_up_at is not None and time.monotonic() + delay > give_up_at:
                        return False
                    self._beat()
                    time.sleep(delay)  # not stopping.wait: SIGTERM must not turn this into a busy loop
                    delay = min(delay * 2, BACKOFF_MAX_S)
            if self.failing_since is not None:
                log.info("InfluxDB writes succeed again after %.1f s", time.monotonic() - self.failing_since)
                self.failing_since = None
                self._write_log.last = -1e18
        for line, error in refused.items():
            for pending in batch.lines.pop(line):
                batch.letters.append((pending, self._dead_letter(pending, f"InfluxDB refused the point: {error}", [])))
        for pendings in batch.lines.values():
            kind = "aggregates_stored" if pendings[0].aggregate else "readings_stored"
            self.stats[kind] += 1
        self.stats["batches"] += 1
        to_ack = [p for pendings in batch.lines.values() for p in pendings] + batch.nothing
        deadline = time.monotonic() + DEADLETTER_WAIT_S
        for pending, info in batch.letters:
            try:  # a dead letter the broker did not take (disconnected): its message is redelivered
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
            if info.is_published():
                to_ack.append(pending)
        self._ack(to_ack)
        return True

    def _store(self, lines: list[str]) -> dict[str, str]:
        """Write LINES; the lines InfluxDB refused (each with its error), found by bisecting a 400.
        Raises Unavailable. A re-sent half rewrites points already stored: harmless, same points."""
        status, error = self.writer.write("".join(lines).encode())
        if status == 204:
            return {}
        if len(lines) == 1:
            return {lines[0]: error}
        half = len(lines) // 2
        return {**self._store(lines[:half]), **self._store(lines[half:])}

    def _ack(self, pendings: list[_Pending]) -> None:
        acked = stale = 0
        with self._lock:
            current = self.generation if self.connected else None
            for p in pendings:
                if p.generation == current:
                    self.client.ack(p.mid, p.qos)
                    acked += 1
                else:
                    stale += 1
        self.stats["acked"] += acked
        self.stats["stale_acks_skipped"] += stale

    def _beat(self, force: bool = False) -> None:
        """The heartbeat file (`check historian` reads its age) with the counters, at most once a second."""
        now = time.monotonic()
        if not force and now - self._last_beat < HEARTBEAT_EVERY_S:
            return
        self._last_beat = now
        state = {"pid": os.getpid(), "time": time.time(), "connected": self.connected, "subscribed": self.subscribed,
                 "influxdb_failing_s": None if self.failing_since is None else round(now - self.failing_since, 1),
                 **self.stats}
        path = self.settings.heartbeat_file
        try:
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                json.dump(state, f)
            os.replace(path + ".tmp", path)
        except OSError as exc:
            if self._connect_log.ready():
                log.warning("cannot write the heartbeat file %s: %s", path, exc.strerror)


def check(environ=os.environ) -> int:
    """`python -m iot_stream check historian`: 0 when the main loop wrote its heartbeat recently."""
    path = environ.get("HISTORIAN_HEARTBEAT_FILE", "").strip() or HEARTBEAT_FILE
    max_age = float(environ.get("HISTORIAN_HEARTBEAT_MAX_AGE", "15"))
    try:
        age = time.time() - os.stat(path).st_mtime
    except OSError as exc:
        print(f"historian: no heartbeat at {path} ({exc.strerror})", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"historian: heartbeat {age:.0f} s old (more than {max_age:g} s): the main loop is stuck", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    from iot_api import logs

    try:
        settings = load_settings()
    except (api_config.ConfigError, mqtt.SettingsError) as exc:
        print(f"iot-historian: configuration error: {exc}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger("iot_stream")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    historian = Historian(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: historian.stopping.set())
    log.info("historian: %s:%d -> %s db=%s rp=%s, batches of %d or %d ms", settings.broker.host, settings.broker.port,
             settings.influxdb_url, settings.influxdb_db, settings.influxdb_rp, settings.batch_max, settings.batch_ms)
    return historian.run()
