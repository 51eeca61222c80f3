"""The district processor: `python -m iot_stream processor`.

Reads `iot/{district}/{sensor_id}/{type}` and the retained `meta/sensors/{id}`, keeps per district and
type each sensor's latest value in a sliding window of event time (window.py: the watermark and late
readings are explained there), and every PROCESSOR_PUBLISH_EVERY seconds publishes what changed as
retained `agg/{district}/{type}` (QoS 1); a district and type whose window emptied has its retained
message cleared (an empty retained payload), so nobody is shown a stale mean as current.

Clean session, on purpose: the state is only the last window, and it is rebuilt on start from InfluxDB
(the warm-up: each sensor's last value of each type within the window, mapped to its district by the
retained meta messages). A persistent session would make the broker queue every reading while the
processor is away (up to max_queued_messages, a million) only to replay, after an outage, readings the
warm-up already has or that have left the window. The subscriptions come first and the warm-up after
(it starts once the broker acknowledged them), so nothing falls between the two; the window keeps each
sensor's newest value whatever the order, so the live readings and the warm-up merge in any order. The
first publication waits for the warm-up (or for one full window of live readings if InfluxDB cannot be
read, after which it would add nothing).

Invalid readings (iot_api.readings' rules, `ts` required, the topic's sensor id and type equal to the
payload's) are ignored and counted; the counters are logged every minute and at exit. SIGTERM/SIGINT:
disconnect, exit 0. A bad setting: one line on stderr, exit 2.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

import orjson
import paho.mqtt.client as mqtt
from iot_api import config as api_config
from iot_api.influx import quote_ident
from iot_api.readings import Limits, check_sensor_id
from iot_api.timefmt import NS_PER_S

from . import mqtt as broker
from . import reading
from .reading import DISTRICT_RE, Invalid
from .window import Key, Windows, changes

log = logging.getLogger("iot_stream.processor")

DEFAULT_CLIENT_ID = "iot-processor"
READINGS, META = "iot/#", "meta/sensors/#"
# docs/mqtt.md: q01..q20, or a commune's slug (lowercase ASCII, `-` for spaces and apostrophes).
# What Toulouse's weather can be. A value outside is a sensor fault (the stations' -50 °C glitch), which
# the historian stores as it came (the raw record) but which must not become a district's minimum or
# drag its mean: it is left out of the windows and counted. Other types are taken as they come.
PLAUSIBLE = {"temp": (-40.0, 60.0), "humidity": (0.0, 100.0), "pressure": (850.0, 1100.0)}


def plausible(kind: str, value: float) -> bool:
    lo, hi = PLAUSIBLE.get(kind, (float("-inf"), float("inf")))
    return lo <= value <= hi
STATS_EVERY_S = 60.0
WARMUP_RETRY_S = 2.0
_UNKNOWN = object()  # a published value the broker may have lost (after a reconnect): resend


class Settings:
    def __init__(self, environ=os.environ):
        try:
            self.broker = broker.broker_settings(DEFAULT_CLIENT_ID, environ)
        except broker.SettingsError as exc:
            raise api_config.ConfigError(str(exc)) from None
        # The INFLUXDB_* settings and the reading rules' limits, read exactly as the api reads them.
        self.api = api_config.load(environ)
        self.window_s = _seconds(environ, "PROCESSOR_WINDOW", 300.0, 1.0, 86400.0)
        self.publish_every_s = _seconds(environ, "PROCESSOR_PUBLISH_EVERY", 2.0, 0.05, 3600.0)
        self.window_ns = int(self.window_s * NS_PER_S)
        self.limits = Limits(max_batch=1, min_ts_ns=self.api.min_ts_ns, max_future_ns=self.api.max_future_ns,
                             retention_ns=self.api.retention_ns, measurement=self.api.measurement)


def _seconds(environ, name: str, default: float, lo: float, hi: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise api_config.ConfigError(f"{name}={raw!r}: must be a number of seconds") from None
    if not lo <= value <= hi:  # NaN fails this too
        raise api_config.ConfigError(f"{name}={raw!r}: must be between {lo:g} and {hi:g} seconds")
    return value


# -- messages --------------------------------------------------------------------------------------
def parse_reading(topic: str, payload: bytes, limits: Limits) -> tuple[str, str, str, int, float]:
    """(district, sensor_id, type, ts in ns, value) of a reading on MQTT (reading.py: the api's rules
    plus MQTT's, the same judgement as the historian's), or Invalid."""
    line, district, sensor_id, kind, doc = reading.parse(topic, payload, limits)
    return district, sensor_id, kind, int(line.rsplit(" ", 1)[1]), float(doc["value"])  # ts: as stored


def parse_meta(topic: str, payload: bytes) -> tuple[str, str | None]:
    """(sensor_id, district) of a retained meta message; district None when it was cleared."""
    sensor_id = topic[len("meta/sensors/"):]
    try:
        check_sensor_id(sensor_id)
    except ValueError as exc:
        raise Invalid(f"meta topic's sensor_id {exc}") from None
    if not payload:
        return sensor_id, None
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise Invalid("meta payload is not JSON") from None
    if type(doc) is not dict or type(doc.get("district")) is not str or not DISTRICT_RE.fullmatch(doc["district"]):
        raise Invalid("meta payload has no valid district")
    if "sensor_id" in doc and str(doc["sensor_id"]) != sensor_id:
        raise Invalid("meta topic's sensor_id differs from the payload's")
    return sensor_id, doc["district"]


# -- warm-up ---------------------------------------------------------------------------------------
def warmup_query(settings: Settings, now_ns: int) -> list[tuple[str, str, int, float]]:
    """Each sensor's last value of each type within the window ending now, from InfluxDB:
    [(sensor_id, type, ts in ns, value)]. Raises OSError/RuntimeError when InfluxDB cannot answer."""
    api = settings.api
    src = f"{quote_ident(api.influxdb_rp)}.{quote_ident(api.measurement)}"  # validated identifiers
    q = f'SELECT last("value") AS "value" FROM {src} WHERE time > $start GROUP BY "sensor_id", "type"'  # noqa: S608
    form = {"db": api.influxdb_db, "q": q, "epoch": "ns",
            "params": json.dumps({"start": now_ns - settings.window_ns})}  # the value travels bound
    req = urllib.request.Request(  # noqa: S310 - config checked the URL is http(s)
        api.influxdb_url + "/query", data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    if api.influxdb_user:
        token = base64.b64encode(f"{api.influxdb_user}:{api.influxdb_password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=api.influxdb_timeout_s) as resp:  # noqa: S310 - http(s) only
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()[:300].decode(errors="replace")
        if exc.code == 404 or "not found" in body:  # no database or retention policy yet: no data yet
            return []
        raise RuntimeError(f"InfluxDB answered {exc.code}: {body}") from None
    result = doc.get("results", [{}])[0]
    if "error" in result:
        if "not found" in result["error"]:
            return []
        raise RuntimeError(f"InfluxDB: {result['error']}")
    rows = []
    for series in result.get("series", []):
        tags = series.get("tags") or {}
        for ts, value in series["values"]:
            if value is not None:
                rows.append((tags.get("sensor_id", ""), tags.get("type", ""), int(ts), float(value)))
    return rows


# -- the service -----------------------------------------------------------------------------------
class Processor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.windows = Windows(settings.window_ns)
        self.counts: Counter[str] = Counter()
        self.districts: dict[str, str] = {}  # sensor_id -> district, from the retained meta messages
        self.pending: dict[tuple[str, str], tuple[int, float]] = {}  # warm-up values of sensors without meta yet
        self.published: dict[Key, object] = {}
        self.events: queue.Queue = queue.Queue()  # paho's thread -> the main thread, which owns the state
        self.stop = threading.Event()
        self.connected = False
        self.meta_burst_seen = False  # the retained meta messages came (see on_subscribe)
        self.warmup_started = False
        self.warmed = False
        self.started = time.monotonic()
        self.client = broker.make_client(settings.broker, clean_session=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._meta_mid: int | None = None
        self._readings_mid: int | None = None

    # paho's network thread: only hand events over.
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        # Two SUBSCRIBEs, meta first: the broker sends a subscription's retained messages right after
        # its SUBACK, so by the second SUBACK the retained meta messages have arrived.
        _, self._meta_mid = client.subscribe(META, qos=1)
        _, self._readings_mid = client.subscribe(READINGS, qos=1)
        self.events.put(("connected", None, None))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.events.put(("disconnected", str(reason_code), None))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            log.error("broker refused a subscription (mid %s): %s", mid, reason_codes)
        if mid == self._readings_mid:
            self.events.put(("subscribed", None, None))

    def _on_message(self, client, userdata, msg):
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # paho raises on access; an exception here would end its thread
            topic = msg._topic.decode(errors="replace")  # U+FFFD: refused later as an invalid topic
        self.events.put(("message", topic, msg.payload))

    # the main thread: everything below.
    def handle(self, kind: str, topic, payload) -> None:
        if kind == "message":
            try:
                if topic.startswith("meta/sensors/"):
                    self.on_meta(topic, payload)
                else:
                    self.on_reading(topic, payload)
            except Exception:  # a message must never stop the processor: counted and logged
                self.counts["errors"] += 1
                log.exception("unexpected error on a message of %s", topic[:200])
        elif kind == "connected":
            self.connected = True
            log.info("connected to %s:%s as %s", self.settings.broker.host, self.settings.broker.port,
                     self.settings.broker.client_id)
            # The broker may have lost what was published (a restart without persistence): send it again.
            self.published = dict.fromkeys(self.published, _UNKNOWN)
        elif kind == "disconnected":
            if self.connected:
                log.warning("disconnected from the broker (%s): reconnecting", topic)
            self.connected = False
        elif kind == "subscribed":
            self.meta_burst_seen = True
            if not self.warmup_started:  # InfluxDB is read only once the readings are subscribed: no gap
                self.warmup_started = True
                threading.Thread(target=self._warmup, name="warmup", daemon=True).start()
        elif kind == "warmup":
            self.on_warmup(payload)

    def on_reading(self, topic: str, payload: bytes) -> None:
        self.counts["readings"] += 1
        try:
            district, sensor_id, kind, ts_ns, value = parse_reading(topic, payload, self.settings.limits)
        except Invalid as exc:
            self.counts["invalid"] += 1
            if self.counts["invalid"] <= 10 or log.isEnabledFor(logging.DEBUG):
                log.warning("invalid reading on %s ignored: %s", topic[:200], str(exc)[:300])
            return
        self.counts[self._add(district, sensor_id, kind, ts_ns, value, time.time_ns())] += 1

    def on_meta(self, topic: str, payload: bytes) -> None:
        self.counts["meta"] += 1
        try:
            sensor_id, district = parse_meta(topic, payload)
        except Invalid as exc:
            self.counts["invalid_meta"] += 1
            log.warning("meta message on %s ignored: %s", topic[:200], exc)
            return
        if district is None:
            self.districts.pop(sensor_id, None)
            return
        self.districts[sensor_id] = district
        for key in [k for k in self.pending if k[0] == sensor_id]:
            ts_ns, value = self.pending.pop(key)
            self.counts["warmup_" + self._add(district, sensor_id, key[1], ts_ns, value, time.time_ns())] += 1

    def _add(self, district: str, sensor_id: str, kind: str, ts_ns: int, value: float, now_ns: int) -> str:
        """Into the windows, unless implausible; the outcome counted (accepted, stale, late, implausible)."""
        if not plausible(kind, value):
            return "implausible"
        return self.windows.add(district, sensor_id, kind, ts_ns, value, now_ns)

    def on_warmup(self, rows: list[tuple[str, str, int, float]]) -> None:
        now = time.time_ns()
        for sensor_id, kind, ts_ns, value in rows:
            district = self.districts.get(sensor_id)
            if district is None:  # its meta message may still come
                self.pending[(sensor_id, kind)] = (ts_ns, value)
            else:
                self.counts["warmup_" + self._add(district, sensor_id, kind, ts_ns, value, now)] += 1
        self.warmed = True
        log.info("warm-up: %d values from InfluxDB (%d waiting for their sensor's meta message)",
                 len(rows), len(self.pending))

    def ready(self) -> bool:
        """May publish: the state is complete (see the module's docstring)."""
        if not (self.connected and self.meta_burst_seen):
            return False
        return self.warmed or time.monotonic() - self.started >= self.settings.window_s

    def publish(self) -> None:
        current = self.windows.aggregates()
        horizon = self.windows.start_ns()
        if horizon is not None:  # warm-up values that never met their meta message and left the window
            for key in [k for k, (ts, _) in self.pending.items() if ts <= horizon]:
                del self.pending[key]
        send, clear = changes(self.published, current)  # type: ignore[arg-type]
        for agg in send:
            self._send(agg.district, agg.type, orjson.dumps(agg.payload()))
            self.published[(agg.district, agg.type)] = agg
            self.counts["published"] += 1
        for key in clear:
            self._send(key[0], key[1], b"")  # an empty retained message deletes the retained one
            del self.published[key]
            self.counts["cleared"] += 1

    def _send(self, district: str, kind: str, payload: bytes) -> None:
        info = self.client.publish(f"agg/{district}/{kind}", payload, qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish to agg/%s/%s failed: %s", district, kind, mqtt.error_string(info.rc))

    def _warmup(self) -> None:
        """Thread: query InfluxDB until it answers (or one window has passed: the live readings are then
        complete on their own), then hand the rows to the main thread."""
        while not self.stop.is_set():
            try:
                rows = warmup_query(self.settings, time.time_ns())
            except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
                if time.monotonic() - self.started >= self.settings.window_s:
                    log.error("warm-up abandoned (InfluxDB: %s): the window is live data only", exc)
                    self.events.put(("warmup", None, []))
                    return
                log.warning("warm-up: InfluxDB not readable (%s): retrying in %gs", exc, WARMUP_RETRY_S)
                self.stop.wait(WARMUP_RETRY_S)
                continue
            self.events.put(("warmup", None, rows))
            return

    def stats(self) -> str:
        keys = ("readings", "accepted", "stale", "late", "implausible", "invalid", "meta", "invalid_meta", "warmup_accepted",
                "published", "cleared", "errors")
        return " ".join(f"{k}={self.counts[k]}" for k in keys) + f" sensors_in_window={len(self.windows)}"

    def run(self) -> None:
        b = self.settings.broker
        self.client.connect_async(b.host, b.port, keepalive=b.keepalive)
        self.client.loop_start()  # the warm-up starts at the first SUBACK of the readings (handle)
        next_publish = time.monotonic() + self.settings.publish_every_s
        next_stats = time.monotonic() + STATS_EVERY_S
        try:
            while not self.stop.is_set():
                timeout = max(0.0, min(next_publish - time.monotonic(), 0.2))  # 0.2: SIGTERM is seen promptly
                try:
                    self.handle(*self.events.get(timeout=timeout))
                except queue.Empty:
                    pass
                now = time.monotonic()
                if now >= next_publish:
                    next_publish = now + self.settings.publish_every_s
                    if self.ready():
                        self.publish()
                if now >= next_stats:
                    next_stats = now + STATS_EVERY_S
                    log.info("stats: %s", self.stats())
        finally:
            self.stop.set()
            self.client.disconnect()
            self.client.loop_stop()
            log.info("stopped: %s", self.stats())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except api_config.ConfigError as exc:
        print(f"processor: bad setting: {exc}", file=sys.stderr)
        return 2
    processor = Processor(settings)

    def _stop(signum, _frame):
        log.info("signal %s: stopping", signal.Signals(signum).name)
        processor.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("window %gs, publishing every %gs, InfluxDB %s db %s", settings.window_s, settings.publish_every_s,
             settings.api.influxdb_url, settings.api.influxdb_db)
    processor.run()
    return 0
