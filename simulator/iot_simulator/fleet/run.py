"""The fleet's loop: one paho client, one thread.

The network loop (paho's `loop()`) runs in the same thread as the schedule, so acknowledgements,
counters and the ack log need no lock. Stations are spread over the interval in groups (about one
every 100 ms) rather than all at once. A reading counts as acked only in on_publish (its PUBACK).
While the broker is away paho keeps the QoS 1 messages and resends them on reconnection; past
`max_pending` unacknowledged readings the fleet skips ticks instead of growing without bound.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from .model import StationModel, Weather
from .settings import Config, UsageError

STATIONS_JSON = Path(__file__).resolve().parent / "stations.json"
GROUP_SPACING = 0.1  # s between two groups of stations within an interval
FATAL_CONNACK = {"Bad user name or password", "Not authorized"}


def load_stations(limit: int | None, path: Path = STATIONS_JSON) -> list[dict]:
    stations = json.loads(path.read_text(encoding="utf-8"))["stations"]
    if limit is not None:
        if limit > len(stations):
            raise UsageError(f"--stations={limit}: there are {len(stations)} stations")
        stations = stations[:limit]
    return stations


def meta_payload(st: dict) -> str:
    keys = ("sensor_id", "name", "district", "district_name", "commune", "lat", "lon", "altitude", "kind", "types")
    return json.dumps({k: st[k] for k in keys}, ensure_ascii=False)


class _Ts:
    """RFC 3339 UTC with milliseconds; the seconds part cached (it changes once a second)."""

    def __init__(self):
        self.sec = -1
        self.prefix = ""

    def format(self, ms: int) -> str:
        sec, frac = divmod(ms, 1000)
        if sec != self.sec:
            self.sec, self.prefix = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self.prefix}.{frac:03d}Z"


class Fleet:
    def __init__(self, cfg: Config, stations: list[dict], err=sys.stderr):
        self.cfg = cfg
        self.err = err
        weather = Weather(cfg.seed)
        self.stations = stations
        self.models = [StationModel(st, weather, cfg.seed, faults=cfg.faults) for st in stations]
        self.last_ms = [0] * len(stations)
        n_groups = max(1, min(len(stations), round(cfg.interval / GROUP_SPACING)))
        self.groups = [list(range(g, len(stations), n_groups)) for g in range(n_groups)]
        self.ts = _Ts()
        # mid -> ack-log line (a reading) or None (a meta message); paho's mids wrap at 65,535.
        self.pending: dict[int, str | None] = {}
        self.early: set[int] = set()  # acks seen before publish() returned (defensive)
        self.published = self.acked = self.meta_published = self.meta_acked = 0
        self.skipped = self.silent = self.glitches = self.reconnects = 0
        self.ack_log = open(cfg.ack_log, "a", encoding="utf-8") if cfg.ack_log else None
        self.ack_dirty = False
        self.connected = False
        self.ever_connected = False
        self.fatal: str | None = None
        self.stop_reason: str | None = None
        self.abort = False
        self.attempts = 0
        self.next_attempt = 0.0
        self.paused = False
        self.client = self._client()

    # -- the client ------------------------------------------------------------------------------
    def _client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.cfg.client_id, protocol=mqtt.MQTTv311,
                        clean_session=False)  # persistent session: QoS 1 state survives a reconnection
        if self.cfg.username:
            c.username_pw_set(self.cfg.username, self.cfg.password)
        c.max_inflight_messages_set(200)  # 20 (paho's default) would slow the catch-up after an outage
        c.max_queued_messages_set(0)  # unbounded in paho; bounded here by max_pending
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        return c

    def say(self, text: str) -> None:
        print(f"fleet: {text}", file=self.err, flush=True)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            text = str(reason_code)
            if text in FATAL_CONNACK:
                self.fatal = (f"the broker {self.cfg.host}:{self.cfg.port} refused user {self.cfg.username!r}: {text} "
                              "(check MQTT_USERNAME and MQTT_PASSWORD_FILE)")
            else:
                self.say(f"the broker refused the connection: {text}; retrying")
                self._schedule_retry()
            return
        first = not self.ever_connected
        self.connected, self.ever_connected, self.attempts = True, True, 0
        self.say(f"connected to {self.cfg.host}:{self.cfg.port} as {self.cfg.client_id!r} "
                 f"(session present: {flags.session_present})")
        if first or not flags.session_present:  # a broker that lost its state also lost the retained meta
            self._publish_meta()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected:
            self.say(f"connection to the broker lost ({reason_code}); reconnecting, "
                     f"{len(self.pending)} messages await their ack")
        self.connected = False
        self._schedule_retry()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if mid not in self.pending:
            self.early.add(mid)
            return
        self._acked(self.pending.pop(mid))

    def _acked(self, line: str | None) -> None:
        if line is None:
            self.meta_acked += 1
            return
        self.acked += 1
        if self.ack_log:
            self.ack_log.write(line)
            self.ack_dirty = True

    def _track(self, info: mqtt.MQTTMessageInfo, line: str | None) -> None:
        if info.mid in self.early:
            self.early.discard(info.mid)
            self._acked(line)
        else:
            self.pending[info.mid] = line

    def _schedule_retry(self) -> None:
        self.attempts += 1
        self.next_attempt = time.monotonic() + min(2 ** (self.attempts - 1), 5)

    def _try_connect(self) -> None:
        """Open the TCP connection and send CONNECT; the CONNACK arrives through loop()."""
        try:
            self.client.reconnect()
            if self.ever_connected:
                self.reconnects += 1
            self.next_attempt = time.monotonic() + 10  # no CONNACK within 10 s: try again
        except OSError as exc:
            self._schedule_retry()
            wait = self.next_attempt - time.monotonic()
            what = "unreachable" if not self.ever_connected else "still unreachable"
            self.say(f"broker {self.cfg.host}:{self.cfg.port} {what} ({exc.strerror or exc}); "
                     f"retrying in {wait:.0f} s (attempt {self.attempts})")

    def _network(self, timeout: float) -> None:
        """Wait up to TIMEOUT for network events (or for the next connection attempt)."""
        if self.client.socket() is not None:
            rc = self.client.loop(timeout=max(timeout, 0.0))
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                if not self.connected and time.monotonic() >= self.next_attempt:
                    self._try_connect()  # connected at TCP level but no CONNACK in time
                return
        now = time.monotonic()
        if now >= self.next_attempt:
            self._try_connect()
            return
        time.sleep(max(0.0, min(timeout, self.next_attempt - now)))

    # -- publishing ------------------------------------------------------------------------------
    def _publish_meta(self) -> None:
        for st in self.stations:
            info = self.client.publish(f"meta/sensors/{st['sensor_id']}", meta_payload(st), qos=1, retain=True)
            self.meta_published += 1
            self._track(info, None)

    def _publish_group(self, group: list[int]) -> None:
        if len(self.pending) >= self.cfg.max_pending:
            if not self.paused:
                self.say(f"{len(self.pending)} readings await the broker's ack: skipping ticks until it catches up")
            self.paused = True
            self.skipped += len(group)
            return
        self.paused = False
        now = time.time()
        ms_now = int(now * 1000)
        for i in group:
            model, st = self.models[i], self.stations[i]
            readings = model.readings(now)
            if not readings:
                self.silent += 1
                continue
            ms = ms_now if ms_now > self.last_ms[i] else self.last_ms[i] + 1  # strictly increasing per station
            self.last_ms[i] = ms
            ts = self.ts.format(ms)
            sid, district = st["sensor_id"], st["district"]
            for r in readings:
                if r.value == -50.0:
                    self.glitches += 1
                payload = json.dumps({"ts": ts, "type": r.type, "value": r.value, "sensor_id": sid})
                info = self.client.publish(f"iot/{district}/{sid}/{r.type}", payload, qos=1)
                self.published += 1
                self._track(info, f"{sid} {r.type} {ts} {r.value!r}\n")

    # -- the run ---------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        if self.stop_reason is not None:
            self.abort = True  # a second signal: no drain
        self.stop_reason = signal.Signals(signum).name

    def _flush(self) -> None:
        if self.ack_dirty:
            self.ack_log.flush()
            self.ack_dirty = False

    def summary(self) -> dict:
        return {"published": self.published, "acked": self.acked, "unacked": self.published - self.acked,
                "meta_published": self.meta_published, "meta_acked": self.meta_acked,
                "stations": len(self.stations), "silent_ticks": self.silent, "glitches": self.glitches,
                "skipped_ticks": self.skipped, "reconnects": self.reconnects, "stopped_by": self.stop_reason}

    def _progress(self) -> str:
        return (f"{self.published} published, {self.acked} acked, {len(self.pending)} awaiting ack, "
                f"{self.skipped} skipped, {'connected' if self.connected else 'disconnected'}")

    def run(self) -> dict:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        cfg = self.cfg
        self.say(f"{len(self.stations)} stations every {cfg.interval:g} s to {cfg.host}:{cfg.port} "
                 f"as {cfg.username or 'anonymous'} (client id {cfg.client_id!r}, QoS 1, persistent session)")
        start = time.monotonic()
        # Wait for the first CONNACK before the clock starts: readings begin once the broker is there.
        while not self.connected and self.stop_reason is None and self.fatal is None:
            self._network(0.2)
        if self.fatal:
            raise UsageError(self.fatal)
        t0 = time.monotonic()
        deadline = None if cfg.duration is None else t0 + cfg.duration
        tick, g = 0, 0
        step = cfg.interval / len(self.groups)
        next_progress = t0 + cfg.progress if cfg.progress else None
        while self.stop_reason is None:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.stop_reason = "duration"
                break
            due = t0 + tick * cfg.interval + g * step
            if now >= due:
                if now - due > cfg.interval:  # stalled (e.g. a slow connect): resume from now, no burst
                    t0 += now - due
                self._publish_group(self.groups[g])
                g += 1
                if g == len(self.groups):
                    g, tick = 0, tick + 1
                    if cfg.count is not None and tick >= cfg.count:
                        self.stop_reason = "count"
                        break
                continue
            self._network(min(due - now, 1.0) if deadline is None else min(due - now, deadline - now, 1.0))
            if self.fatal:
                raise UsageError(self.fatal)
            self._flush()
            if next_progress is not None and now >= next_progress:
                self.say(self._progress())
                next_progress = now + cfg.progress
        self._drain(min(cfg.drain_timeout, 3.0) if self.abort else cfg.drain_timeout)
        self.say(f"stopped ({self.stop_reason}) after {time.monotonic() - start:.1f} s: {self._progress()}")
        return self.summary()

    def _drain(self, timeout: float) -> None:
        """Stop publishing; wait (bounded) for the outstanding acknowledgements, then disconnect."""
        end = time.monotonic() + timeout
        while self.pending and not self.abort and time.monotonic() < end and self.fatal is None:
            self._network(min(0.1, max(0.0, end - time.monotonic())))
        self._flush()
        if self.connected:
            self.connected = False  # ours: not "connection lost"
            self.client.disconnect()  # a clean DISCONNECT; the persistent session stays on the broker
            self.client.loop(0.1)
        if self.ack_log:
            self.ack_log.close()
