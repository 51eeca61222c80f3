"""InfluxQL injection through every read filter of the real api, on a real InfluxDB 1.x.

Issue: "InfluxQL injection attempts through every read filter return 4xx or empty results and leave
the database intact." A few readings are seeded through the api first; each attempt must answer a 4xx,
or a 200 that holds no reading of another sensor; afterwards the database, the measurement, every
seeded reading and every series are still there (checked in InfluxDB itself, not through the api).
"""
from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest
from harness import ApiServer

VICTIMS = {"victim-1": ("temp", [20.5, 21.5, 22.5]), "victim-2": ("humidity", [40.0, 41.0])}
ATTACKER = "attacker"
SEEDED = 3 + 2 + 1


@pytest.fixture(scope="module")
def seeded(influxdb):
    server = ApiServer(influxdb.url, "test_inj_" + uuid.uuid4().hex[:10])
    readings = [{"ts": f"2017-06-25T09:53:1{i}Z", "type": typ, "value": v, "sensor_id": sid}
                for sid, (typ, values) in VICTIMS.items() for i, v in enumerate(values)]
    readings.append({"ts": "2017-06-25T09:53:16Z", "type": "temp", "value": 99.0, "sensor_id": ATTACKER})
    status, _, body = server.post("/data", readings)
    assert (status, body) == (201, {"stored": SEEDED})
    series = sorted(row[0] for s in influxdb.query("SHOW SERIES", db=server.db) for row in s["values"])
    assert len(series) == 3
    yield server, series
    server.stop()


def payloads(db: str) -> list[tuple[str, str]]:
    """(id, raw value) pairs; the value is percent-encoded when it is put in a URL."""
    return [
        ("or-1-eq-1", "' OR 1=1"),
        ("or-quoted-true", "' OR '1'='1"),
        ("or-dquote", '" OR ""="'),
        ("drop-database-iot", "x' ; DROP DATABASE iot --"),
        ("drop-database-this", f"x' ; DROP DATABASE \"{db}\" --"),
        ("drop-measurement", '"; DROP MEASUREMENT data; "'),
        ("drop-series", "victim-1'; DROP SERIES FROM data WHERE sensor_id='victim-1"),
        ("delete", "x'; DELETE FROM data; --"),
        ("regex-all", "/.*/"),
        ("or-regex", "123 OR sensor_id =~ /.*/"),
        ("victim-or-regex", "victim-1' OR sensor_id =~ /.*/ --"),
        ("newline-drop", f"x\nDROP DATABASE \"{db}\""),
        ("crlf-drop", "x\r\nDROP MEASUREMENT data"),
        ("semicolon-drop", f"x; DROP DATABASE \"{db}\""),
        ("semicolon-show", "x;SHOW DATABASES"),
        ("trailing-newline", "victim-1\n"),
        ("nul", "victim-1\x00"),
        ("backslash", "\\"),
        ("backslash-quote", "\\'"),
        ("bind-param-name", "$sensor_id"),
        ("comment", "victim-1 -- "),
        ("time-expr", "now() - 1000w"),
        ("unicode-quote", "victim-1\u2019 OR 1=1"),
        ("very-long", "victim-1" + "' OR 1=1" * 2000),
    ]


# (id, path template): {p} is where the payload goes. Filters that need a sensor use the attacker's.
FILTERS = [
    ("data-sensor_id", "/data?sensor_id={p}"),
    ("data-type", "/data?type={p}"),
    ("data-from", "/data?sensor_id=attacker&from={p}"),
    ("data-to", "/data?sensor_id=attacker&to={p}"),
    ("data-limit", "/data?sensor_id=attacker&limit={p}"),
    ("stats-id", "/sensors/{p}/stats"),
    ("stats-type", "/sensors/attacker/stats?type={p}"),
    ("stats-from", "/sensors/attacker/stats?from={p}"),
    ("histogram-id", "/sensors/{p}/histogram"),
    ("histogram-type", "/sensors/attacker/histogram?type={p}"),
    ("histogram-to", "/sensors/attacker/histogram?to={p}"),
    ("top-type", "/top?type={p}"),
    ("top-n", "/top?n={p}"),
    ("sensors-type", "/sensors?type={p}"),
]
PAYLOAD_IDS = [pid for pid, _ in payloads("iot")]


def _state(influxdb, db: str):
    databases = {row[0] for s in influxdb.query("SHOW DATABASES") for row in s["values"]}
    measurements = {row[0] for s in influxdb.query("SHOW MEASUREMENTS", db=db) for row in s["values"]}
    series = sorted(row[0] for s in influxdb.query("SHOW SERIES", db=db) for row in s["values"])
    counts = {sid: influxdb.count(db, "WHERE sensor_id = $sid", {"sid": sid}) for sid in [*VICTIMS, ATTACKER]}
    return databases, measurements, series, counts


@pytest.mark.parametrize("payload_id", PAYLOAD_IDS)
@pytest.mark.parametrize("filter_id, template", FILTERS, ids=[f for f, _ in FILTERS])
def test_read_filter_injection(filter_id, template, payload_id, seeded, influxdb):
    server, series_before = seeded
    payload = dict(payloads(server.db))[payload_id]
    path = template.format(p=quote(payload, safe=""))

    status, _, body = server.get(path)

    assert status < 500, (path, status, body)
    if status >= 400:
        assert isinstance(body, dict) and body.get("error"), body
    else:
        assert status == 200, (path, status, body)
        text = json.dumps(body)
        # No reading of another sensor: the victims never appear in the answer.
        assert "victim" not in text.replace(json.dumps(payload)[1:-1], ""), (path, body)
        for reading in body.get("readings", []):
            assert reading["sensor_id"] == ATTACKER, (path, body)

    databases, measurements, series, counts = _state(influxdb, server.db)
    assert server.db in databases
    assert measurements == {"data"}
    assert series == series_before
    assert counts == {"victim-1": 3, "victim-2": 2, ATTACKER: 1}


def test_filters_still_work_after_the_attempts(seeded, influxdb):
    """The api itself still answers the honest questions (and so the filters were really applied)."""
    server, _ = seeded
    status, _, body = server.get("/data?sensor_id=victim-1")
    assert status == 200 and body["count"] == 3
    assert {r["sensor_id"] for r in body["readings"]} == {"victim-1"}
    status, _, body = server.get("/data?type=humidity")
    assert status == 200 and {r["sensor_id"] for r in body["readings"]} == {"victim-2"}
    status, _, body = server.get("/data?sensor_id=attacker&from=2017-06-25T09:53:16Z&to=2017-06-25T09:53:16Z")
    assert status == 200 and body["count"] == 1
    status, _, body = server.get("/sensors/victim-2/stats")
    assert status == 200 and body["stats"]["humidity"]["count"] == 2
    status, _, body = server.get("/sensors?type=temp")
    assert status == 200 and [s["sensor_id"] for s in body["sensors"]] == ["attacker", "victim-1"]


@pytest.mark.parametrize("payload_id", PAYLOAD_IDS)
@pytest.mark.parametrize("fld", ["sensor_id", "type"])
def test_line_protocol_injection_through_post(fld, payload_id, seeded, influxdb):
    """The write side: a tag value crafted to add or overwrite points is refused, nothing is written."""
    server, series_before = seeded
    payload = dict(payloads(server.db))[payload_id]
    crafted = [payload, payload + ",type=temp value=0 0\ndata,sensor_id=victim-1", payload + " value=0"]
    for value in crafted:
        reading = {"type": "temp", "value": 1, "sensor_id": ATTACKER, fld: value}
        status, _, body = server.post("/data", reading)
        assert 400 <= status < 500, (value, status, body)
        assert any(p["field"] == fld for p in body.get("problems", [])), (value, body)
    _, measurements, series, counts = _state(influxdb, server.db)
    assert measurements == {"data"}
    assert series == series_before
    assert counts == {"victim-1": 3, "victim-2": 2, ATTACKER: 1}
