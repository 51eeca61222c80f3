"""The historian's rules without a broker or InfluxDB: what a message becomes, which lines a 400 refuses,
and which messages may be acknowledged on which connection (the real components: tests/integration)."""
from __future__ import annotations

import json
import time

import pytest
from iot_stream import historian as h


def settings(**env):
    return h.load_settings({"HISTORIAN_HEARTBEAT_FILE": "/nonexistent/hb", **env})


LIMITS = settings().limits


def utc(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


NOW = time.time_ns() // 10**9 * 10**9


def test_reading_line_is_the_apis_point():
    payload = f'{{"ts":"{utc(NOW)}","type":"temp","value":21.4,"sensor_id":"tls-63"}}'.encode()
    line = h.reading_line("iot/q15/tls-63/temp", payload, LIMITS)
    assert line == f"data,sensor_id=tls-63,type=temp value=21.4 {NOW}\n"
    # An integer sensor id is the same tag value as the topic's digits.
    assert h.reading_line("iot/q1/63/temp", f'{{"ts":"{utc(NOW)}","type":"temp","value":1,"sensor_id":63}}'.encode(), LIMITS)


@pytest.mark.parametrize("topic,payload,error", [
    ("iot/q1/s/temp", b'{"type":"temp","value":1,"sensor_id":"s"}', "the reading is invalid"),  # no ts
    ("iot/q1/s/temp", b"[]", "payload must be one reading object"),
    ("iot/q1/s/temp", b"nope", "malformed JSON"),
    ("iot/q1/other/temp", None, "the topic and the payload disagree"),
    ("iot/q1/s/humidity", None, "the topic and the payload disagree"),
    ("iot/q1/s", None, "topic must be"),
    ("iot/q1/s/temp/x", None, "topic must be"),
])
def test_reading_refused(topic, payload, error):
    payload = payload or f'{{"ts":"{utc(NOW)}","type":"temp","value":1,"sensor_id":"s"}}'.encode()
    with pytest.raises(h.Invalid) as exc:
        h.reading_line(topic, payload, LIMITS)
    assert exc.value.error.startswith(error)


def test_aggregate_line_and_refusals():
    agg = {"district": "q15", "type": "temp", "mean": 21.2, "min": 19, "max": 23.0, "n": 4, "window_s": 300, "ts": utc(NOW)}
    assert h.aggregate_line("agg/q15/temp", json.dumps(agg).encode(), LIMITS) == \
        f"district,district=q15,type=temp max=23.0,mean=21.2,min=19.0,n=4i {NOW}\n"
    for bad in ({"n": 1.5}, {"n": True}, {"mean": "x"}, {"district": "q16"}, {"ts": None}, {"type": "a b"}):
        with pytest.raises(h.Invalid):
            h.aggregate_line("agg/q15/temp", json.dumps({**agg, **bad}).encode(), LIMITS)
    # The district rule of the readings' topics (reading.DISTRICT_RE), not any tag value.
    with pytest.raises(h.Invalid) as exc:
        h.aggregate_line("agg/Q15/temp", json.dumps({**agg, "district": "Q15"}).encode(), LIMITS)
    assert exc.value.problems[0]["field"] == "district" and "lowercase slug" in exc.value.problems[0]["message"]


class FakeWriter:
    """Refuses (400) any body holding a line with `bad`, like InfluxDB's partial write; counts writes."""

    def __init__(self):
        self.bodies = []

    def write(self, body: bytes):
        self.bodies.append(body)
        return (400, "partial write: field type conflict") if b"bad" in body else (204, "")

    def close(self):
        pass


class FakeClient:
    def __init__(self):
        self.acks = []

    def ack(self, mid, qos):
        self.acks.append(mid)


def test_a_400_is_bisected_to_the_refused_lines():
    hist = h.Historian(settings())
    hist.writer = FakeWriter()
    lines = [f"ok{i}\n" for i in range(16)]
    lines[5] = "bad5\n"
    lines[12] = "bad12\n"
    assert set(hist._store(lines)) == {"bad5\n", "bad12\n"}
    assert len(hist.writer.bodies) < 16  # halves that pass are written whole


def test_only_ids_of_the_current_connection_are_acked():
    """A message received on an earlier connection is never acked on the new one (its id there may
    name another message); nothing is acked while disconnected."""
    hist = h.Historian(settings())
    hist.client = FakeClient()
    hist.generation, hist.connected = 3, True
    old = h._Pending(2, 7, 1, "iot/q1/s/temp", b"")
    new = h._Pending(3, 7, 1, "iot/q1/s/temp", b"")
    hist._ack([old, new])
    assert hist.client.acks == [7] and hist.stats["stale_acks_skipped"] == 1
    hist.connected = False
    hist._ack([h._Pending(3, 8, 1, "iot/q1/s/temp", b"")])
    assert hist.client.acks == [7]


def test_a_redelivered_copy_in_the_same_batch_is_one_line_two_acks():
    hist = h.Historian(settings())
    batch = h._Batch()

    class Msg:
        def __init__(self, mid, dup):
            self.mid, self.dup, self.qos, self.topic = mid, dup, 1, "iot/q1/s/temp"
            self.payload = f'{{"ts":"{utc(NOW)}","type":"temp","value":1,"sensor_id":"s"}}'.encode()

    hist._take(batch, (1, Msg(5, False)))
    hist._take(batch, (2, Msg(9, True)))
    assert len(batch.lines) == 1 and [p.mid for p in next(iter(batch.lines.values()))] == [5, 9]
    assert hist.stats["redelivered"] == 1


def test_bad_settings_raise_one_line():
    with pytest.raises(Exception, match="HISTORIAN_BATCH_MS"):
        settings(HISTORIAN_BATCH_MS="soon")
