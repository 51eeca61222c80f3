"""Bad input to the real api (a `python -m iot_api` process on a real InfluxDB 1.x).

Issue: "Bad input -> 4xx with a JSON error naming the field and the problem ... Never a 500 for any
input." Every rejected request is also checked to have stored nothing at all.

The requests are sent with http.client rather than requests (or urllib), so that a test controls every
header and byte: requests adds User-Agent, Accept, Accept-Encoding and Connection headers of its own, sets
Content-Length or chunking itself, and re-quotes the path; urllib adds a Content-Type to a body without one.
"""
from __future__ import annotations

import http.client
import json
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import pytest
from harness import ApiServer
from iot_api.timefmt import format_rfc3339

# Every rejected reading's sensor id starts with SID; each test swaps SID for a fresh id of the same
# length (so body sizes stay exact), and none of that test's readings may ever be stored.
SID = "bad-input"
LIMITS_ENV = {"API_MAX_BATCH": "10", "API_MAX_BODY_BYTES": "2048", "API_RETENTION": "1h"}
JSON_CT = {"Content-Type": "application/json"}


# -- servers: one per settings, shared by the module (each request is independent) ------------------
@pytest.fixture(scope="module")
def default_api(influxdb):
    server = ApiServer(influxdb.url, "test_bad_" + uuid.uuid4().hex[:10])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def limits_api(influxdb):
    server = ApiServer(influxdb.url, "test_badlim_" + uuid.uuid4().hex[:10], LIMITS_ENV)
    yield server
    server.stop()


def request(server: ApiServer, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None, chunked: bool = False):
    """One request with exactly these headers (plus Host); returns (status, headers, json_or_text)."""
    u = urlsplit(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None and not chunked:
            conn.putheader("Content-Length", str(len(body)))
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            if chunked:
                for i in range(0, len(body), 500):
                    piece = body[i:i + 500]
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                conn.send(b"0\r\n\r\n")
            elif body:
                conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (413) and close before reading everything
        resp = conn.getresponse()
        raw = resp.read()
        resp_headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return resp.status, resp_headers, parsed


# -- the table -------------------------------------------------------------------------------------
def fresh_sid() -> str:
    return "bi" + uuid.uuid4().hex[: len(SID) - 2]


def J(doc) -> bytes:
    return json.dumps(doc).encode()


def R(**overrides) -> dict:
    """A valid reading of our sensor (server time), with fields replaced or removed (value DROP)."""
    reading = {"type": "temp", "value": 34, "sensor_id": SID}
    reading.update(overrides)
    return {k: v for k, v in reading.items() if v is not DROP}


DROP = object()


def batch_of(n: int, **bad_at) -> list[dict]:
    """n good readings of bad-input-<i>; bad_at={"i2": {...overrides}} makes reading 2 bad."""
    out = [R(sensor_id=f"{SID}-{i}", ts=format_rfc3339(time.time_ns() - i * 10**9)) for i in range(n)]
    for key, overrides in bad_at.items():
        i = int(key[1:])
        out[i] = {**out[i], **overrides}
        out[i] = {k: v for k, v in out[i].items() if v is not DROP}
    return out


@dataclass
class Bad:
    id: str
    body: bytes
    status: int
    error: str  # fragment of `error`
    problems: tuple = ()  # (index, field, fragment of message)
    headers: dict = field(default_factory=lambda: dict(JSON_CT))
    server: str = "default"
    chunked: bool = False


def one(fld: str, fragment: str):
    return ((None, fld, fragment),)


INVALID = "the reading is invalid; nothing was stored"
SID_MSG = "must be 1-64 characters among letters, digits and _ . : -"
TYPE_MSG = "must start with a letter and use at most 32 letters"
now_ns = time.time_ns()

CASES = [
    # -- not a JSON document ----------------------------------------------------------------------
    Bad("not-json", b"hello", 400, "malformed JSON"),
    Bad("truncated-json", b'{"type": "temp", "value": 3', 400, "malformed JSON"),
    Bad("NaN-literal", b'{"type": "temp", "value": NaN, "sensor_id": "bad-input"}', 400, "malformed JSON"),
    Bad("Infinity-literal", b'{"type": "temp", "value": Infinity, "sensor_id": "bad-input"}', 400,
        "malformed JSON"),
    Bad("minus-Infinity-literal", b'{"type": "temp", "value": -Infinity, "sensor_id": "bad-input"}', 400,
        "malformed JSON"),
    Bad("1e400", b'{"type": "temp", "value": 1e400, "sensor_id": "bad-input"}', 400, "infinity"),
    Bad("empty-body", b"", 400, "empty"),
    Bad("whitespace-body", b" \r\n\t ", 400, "empty"),
    Bad("utf8-bom", b'\xef\xbb\xbf{"type": "temp", "value": 1, "sensor_id": "bad-input"}', 400, "malformed JSON"),
    Bad("invalid-utf8", b'{"type": "temp", "value": 1, "sensor_id": "bad-input\xff"}', 400, "malformed JSON"),
    Bad("lone-surrogate", b'{"type": "temp", "value": 1, "sensor_id": "bad-input\\ud800"}', 400,
        "malformed JSON"),
    Bad("nested-too-deep", b"[" * 3000 + b"]" * 3000, 400, "malformed JSON"),
    Bad("two-documents", J(R()) + J(R()), 400, "malformed JSON"),
    Bad("utf16-body", J(R()).decode().encode("utf-16"), 400, "malformed JSON"),
    # -- JSON, but not a reading or an array ----------------------------------------------------------
    Bad("json-null", b"null", 422, "reading object or an array"),
    Bad("json-string", b'"bad-input"', 422, "reading object or an array"),
    Bad("json-number", b"34", 422, "reading object or an array"),
    Bad("json-true", b"true", 422, "reading object or an array"),
    # -- content type ---------------------------------------------------------------------------------
    Bad("no-content-type", J(R()), 415, "Content-Type must be application/json", headers={}),
    Bad("text-plain", J(R()), 415, "Content-Type", headers={"Content-Type": "text/plain"}),
    Bad("form-urlencoded", J(R()), 415, "Content-Type",
        headers={"Content-Type": "application/x-www-form-urlencoded"}),
    Bad("application-jsonx", J(R()), 415, "Content-Type", headers={"Content-Type": "application/jsonx"}),
    Bad("empty-content-type", J(R()), 415, "Content-Type", headers={"Content-Type": ""}),
    # -- value ----------------------------------------------------------------------------------------
    Bad("value-string", J(R(value="34")), 422, INVALID, one("value", "must be a number")),
    Bad("value-bool", J(R(value=True)), 422, INVALID, one("value", "must be a number")),
    Bad("value-null", J(R(value=None)), 422, INVALID, one("value", "must be a number")),
    Bad("value-object", J(R(value={"v": 1})), 422, INVALID, one("value", "must be a number")),
    Bad("value-array", J(R(value=[34])), 422, INVALID, one("value", "must be a number")),
    Bad("value-NaN-string", J(R(value="NaN")), 422, INVALID, one("value", "must be a number")),
    # -- missing / extra fields -------------------------------------------------------------------------
    Bad("missing-type", J(R(type=DROP)), 422, INVALID, one("type", "is required")),
    Bad("missing-value", J(R(value=DROP)), 422, INVALID, one("value", "is required")),
    Bad("missing-sensor_id", J(R(sensor_id=DROP)), 422, INVALID, one("sensor_id", "is required")),
    Bad("empty-object", b"{}", 422, INVALID,
        ((None, "type", "is required"), (None, "value", "is required"), (None, "sensor_id", "is required"))),
    Bad("extra-field", J(R(unit="C")), 422, INVALID, one("unit", "unknown field")),
    Bad("misspelt-field", J(R(sensor_id=DROP, sensorId=SID)), 422, INVALID,
        ((None, "sensorId", "unknown field"), (None, "sensor_id", "is required"))),
    # -- sensor_id -------------------------------------------------------------------------------------
    Bad("sensor_id-space", J(R(sensor_id="bad input")), 422, INVALID, one("sensor_id", SID_MSG)),
    Bad("sensor_id-comma", J(R(sensor_id="bad-input,type=x")), 422, INVALID, one("sensor_id", SID_MSG)),
    Bad("sensor_id-newline", J(R(sensor_id="bad-input\nx")), 422, INVALID, one("sensor_id", SID_MSG)),
    Bad("sensor_id-trailing-newline", J(R(sensor_id="bad-input\n")), 422, INVALID, one("sensor_id", SID_MSG)),
    Bad("sensor_id-equals", J(R(sensor_id="bad-input=1")), 422, INVALID, one("sensor_id", SID_MSG)),
    Bad("sensor_id-quote", J(R(sensor_id='bad-input"')), 422, INVALID, one("sensor_id", SID_MSG)),
    Bad("sensor_id-backslash", J(R(sensor_id="bad-input\\")), 422, INVALID, one("sensor_id", SID_MSG)),
    Bad("sensor_id-nul", J(R(sensor_id="bad-input\x00")), 422, INVALID, one("sensor_id", SID_MSG)),
    Bad("sensor_id-unicode", J(R(sensor_id="bad-inputé")), 422, INVALID, one("sensor_id", SID_MSG)),
    Bad("sensor_id-empty", J(R(sensor_id="")), 422, INVALID, one("sensor_id", SID_MSG)),
    Bad("sensor_id-65-chars", J(R(sensor_id=SID + "x" * (65 - len(SID)))), 422, INVALID, one("sensor_id", SID_MSG)),
    Bad("sensor_id-float", J(R(sensor_id=123.5)), 422, INVALID, one("sensor_id", "must be a string or an integer")),
    Bad("sensor_id-bool", J(R(sensor_id=True)), 422, INVALID, one("sensor_id", "must be a string or an integer")),
    Bad("sensor_id-null", J(R(sensor_id=None)), 422, INVALID, one("sensor_id", "must be a string or an integer")),
    Bad("sensor_id-array", J(R(sensor_id=[SID])), 422, INVALID, one("sensor_id", "must be a string or an integer")),
    # -- type ------------------------------------------------------------------------------------------
    Bad("type-empty", J(R(type="")), 422, INVALID, one("type", TYPE_MSG)),
    Bad("type-space", J(R(type="te mp")), 422, INVALID, one("type", TYPE_MSG)),
    Bad("type-starts-with-digit", J(R(type="1temp")), 422, INVALID, one("type", TYPE_MSG)),
    Bad("type-33-chars", J(R(type="t" * 33)), 422, INVALID, one("type", TYPE_MSG)),
    Bad("type-comma", J(R(type="temp,sensor_id=x")), 422, INVALID, one("type", TYPE_MSG)),
    Bad("type-trailing-newline", J(R(type="temp\n")), 422, INVALID, one("type", TYPE_MSG)),
    Bad("type-number", J(R(type=5)), 422, INVALID, one("type", "must be a string")),
    Bad("type-null", J(R(type=None)), 422, INVALID, one("type", "must be a string")),
    # -- ts --------------------------------------------------------------------------------------------
    Bad("ts-yesterday", J(R(ts="yesterday")), 422, INVALID, one("ts", "RFC 3339")),
    Bad("ts-date-only", J(R(ts="2017-06-25")), 422, INVALID, one("ts", "RFC 3339")),
    Bad("ts-no-offset", J(R(ts="2017-06-25T09:53:16")), 422, INVALID, one("ts", "RFC 3339")),
    Bad("ts-month-13", J(R(ts="2017-13-01T00:00:00Z")), 422, INVALID, one("ts", "month 13 does not exist")),
    Bad("ts-feb-30", J(R(ts="2017-02-30T00:00:00Z")), 422, INVALID, one("ts", "day 30 does not exist")),
    Bad("ts-feb-29-not-leap", J(R(ts="2019-02-29T00:00:00Z")), 422, INVALID, one("ts", "day 29 does not exist")),
    Bad("ts-hour-25", J(R(ts="2017-06-25T25:00:00Z")), 422, INVALID, one("ts", "time of day out of range")),
    Bad("ts-leap-second", J(R(ts="2016-12-31T23:59:60Z")), 422, INVALID, one("ts", "time of day out of range")),
    Bad("ts-offset-24h", J(R(ts="2017-06-25T09:53:16+24:00")), 422, INVALID, one("ts", "offset out of range")),
    Bad("ts-10-fraction-digits", J(R(ts="2017-06-25T09:53:16.1234567890Z")), 422, INVALID, one("ts", "RFC 3339")),
    Bad("ts-non-ascii-digits", J(R(ts="\u0662\u0660\u0661\u0667-06-25T09:53:16Z")), 422, INVALID,
        one("ts", "RFC 3339")),
    Bad("ts-number", J(R(ts=1498384396)), 422, INVALID, one("ts", "must be an RFC 3339 string")),
    Bad("ts-null", J(R(ts=None)), 422, INVALID, one("ts", "must be an RFC 3339 string")),
    Bad("ts-1970-before-API_MIN_TS", J(R(ts="1970-01-01T00:00:00Z")), 422, INVALID, one("ts", "API_MIN_TS")),
    Bad("ts-year-1", J(R(ts="0001-01-01T00:00:00Z")), 422, INVALID, one("ts", "API_MIN_TS")),
    Bad("ts-2999-future", J(R(ts="2999-01-01T00:00:00Z")), 422, INVALID, one("ts", "in the future")),
    Bad("ts-9999-future", J(R(ts="9999-12-31T23:59:59.999999999Z")), 422, INVALID, one("ts", "in the future")),
    Bad("ts-2h-ahead", J(R(ts=format_rfc3339(now_ns + 2 * 3600 * 10**9))), 422, INVALID,
        one("ts", "API_MAX_FUTURE")),
    # -- batches ---------------------------------------------------------------------------------------
    Bad("batch-empty", b"[]", 422, "empty batch"),
    Bad("batch-of-null", b"[null]", 422, "1 of 1 readings are invalid",
        ((0, "", "must be a reading object"),)),
    Bad("batch-nested", J([[R()]]), 422, "1 of 1 readings are invalid", ((0, "", "must be a reading object"),)),
    Bad("batch-one-bad-value", J(batch_of(5, i2={"value": "hot"})), 422, "1 of 5 readings are invalid",
        ((2, "value", "must be a number"),)),
    Bad("batch-one-bad-sensor_id", J(batch_of(5, i4={"sensor_id": "bad input"})), 422,
        "1 of 5 readings are invalid", ((4, "sensor_id", SID_MSG),)),
    Bad("batch-first-bad", J(batch_of(3, i0={"type": DROP})), 422, "1 of 3 readings are invalid",
        ((0, "type", "is required"),)),
    Bad("batch-two-bad", J(batch_of(6, i1={"ts": "2017-02-30T00:00:00Z"}, i3={"extra": 1})), 422,
        "2 of 6 readings are invalid", ((1, "ts", "day 30"), (3, "extra", "unknown field"))),
    Bad("batch-one-trailing-newline", J(batch_of(4, i1={"sensor_id": "bad-input-1\n"})), 422,
        "1 of 4 readings are invalid", ((1, "sensor_id", SID_MSG),)),
    # -- limits (an api started with API_MAX_BATCH=10, API_MAX_BODY_BYTES=2048, API_RETENTION=1h) --------
    Bad("batch-over-API_MAX_BATCH", J(batch_of(11)), 413, "API_MAX_BATCH", server="limits"),
    Bad("body-over-API_MAX_BODY_BYTES", J(R()) + b" " * 2100, 413, "API_MAX_BODY_BYTES", server="limits"),
    Bad("body-over-API_MAX_BODY_BYTES-chunked", J(R()) + b" " * 2100, 413, "API_MAX_BODY_BYTES",
        server="limits", chunked=True),
    Bad("body-2049-bytes", J(R()).ljust(2049), 413, "API_MAX_BODY_BYTES", server="limits"),
    Bad("ts-outside-retention", J(R(ts=format_rfc3339(now_ns - 2 * 3600 * 10**9))), 422, INVALID,
        one("ts", "retention"), server="limits"),
    Bad("batch-one-outside-retention", J(batch_of(3, i1={"ts": format_rfc3339(now_ns - 2 * 3600 * 10**9)})), 422,
        "1 of 3 readings are invalid", ((1, "ts", "retention"),), server="limits"),
]


@pytest.fixture
def servers(request):
    return {"default": request.getfixturevalue("default_api"), "limits": request.getfixturevalue("limits_api")}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_post_data_rejects_bad_input(case: Bad, servers, influxdb):
    server = servers[case.server]
    before = influxdb.count(server.db)
    ours = fresh_sid()

    status, headers, body = request(server, "POST", "/data", case.body.replace(SID.encode(), ours.encode()),
                                    case.headers, chunked=case.chunked)

    assert status == case.status, body
    # Nothing at all was stored: not this request's readings, and nothing else either.
    assert influxdb.count(server.db, f"WHERE sensor_id =~ /^{ours}/") == 0, body
    assert influxdb.count(server.db) == before, body
    assert headers.get("content-type", "").startswith("application/json")
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    assert case.error in body["error"], body
    for index, fld, fragment in case.problems:
        assert any(p.get("index") == index and p.get("field") == fld and fragment in p.get("message", "")
                   for p in body.get("problems", [])), \
            f"no problem (index={index}, field={fld!r}, ~{fragment!r}) in {body}"


# -- the same limits, just inside: the rejections above are not off by one, and storing works -------
def test_boundaries_are_accepted(servers, influxdb):
    default, limits = servers["default"], servers["limits"]
    ok = "ok-" + uuid.uuid4().hex[:6]

    status, _, body = request(default, "POST", "/data",
                              b'{"ts": "2017-06-25T09:53:16Z", "type": "temp", "value": 34, "sensor_id": 123}',
                              JSON_CT)
    assert (status, body) == (201, {"stored": 1})
    for i, ctype in enumerate(["application/json; charset=utf-8", "Application/JSON", "application/json ; x=y"]):
        status, _, body = request(default, "POST", "/data", J(R(sensor_id=f"{ok}-ct{i}")), {"Content-Type": ctype})
        assert (status, body) == (201, {"stored": 1}), ctype
    status, _, body = request(limits, "POST", "/data",
                              J([R(sensor_id=f"{ok}-b{i}") for i in range(10)]), JSON_CT)
    assert (status, body) == (201, {"stored": 10})
    exactly = J(R(sensor_id=f"{ok}-2048")).ljust(2048)
    assert len(exactly) == 2048
    for chunked in (False, True):
        status, _, body = request(limits, "POST", "/data", exactly, JSON_CT, chunked=chunked)
        assert (status, body) == (201, {"stored": 1}), chunked
    half_hour_ago = format_rfc3339(time.time_ns() - 1800 * 10**9)
    status, _, body = request(limits, "POST", "/data", J(R(sensor_id=f"{ok}-ret", ts=half_hour_ago)), JSON_CT)
    assert (status, body) == (201, {"stored": 1})

    assert influxdb.count(default.db, "WHERE sensor_id = '123'") == 1
    assert influxdb.count(default.db, f"WHERE sensor_id =~ /^{ok}/") == 3
    assert influxdb.count(limits.db, f"WHERE sensor_id =~ /^{ok}/") == 10 + 2 + 1


def test_declared_oversized_body_is_refused_before_it_is_read(servers, influxdb):
    """A Content-Length over the limit is answered 413 from the header alone."""
    limits = servers["limits"]
    u = urlsplit(limits.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.putrequest("POST", "/data", skip_accept_encoding=True)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(10 * 1024 * 1024))
        conn.endheaders()
        conn.send(J(R()))  # far less than announced: the answer must not wait for the rest
        resp = conn.getresponse()
        status, body = resp.status, json.loads(resp.read())
    finally:
        conn.close()
    assert status == 413
    assert "10485760 bytes exceeds the maximum of 2048" in body["error"]
    assert influxdb.count(limits.db, f"WHERE sensor_id =~ /^{SID}/") == 0


# -- methods and paths --------------------------------------------------------------------------------
METHOD_CASES = [
    ("PUT", "/data", 405, "GET, POST"),
    ("DELETE", "/data", 405, "GET, POST"),
    ("PATCH", "/data", 405, "GET, POST"),
    ("POST", "/sensors", 405, "GET"),
    ("POST", "/top", 405, "GET"),
    ("DELETE", "/sensors/bad-input/stats", 405, "GET"),
    ("POST", "/openapi.json", 405, "GET"),
    ("GET", "/nope", 404, None),
    ("POST", "/nope", 404, None),
    ("GET", "/data/", 404, None),
    ("GET", "/DATA", 404, None),
    ("GET", "/sensors/bad-input", 404, None),
    ("GET", "/sensors/bad-input/unknown", 404, None),
    ("GET", "/sensors/a/b/stats", 404, None),
    ("GET", "/", 404, None),
]


@pytest.mark.parametrize("method, path, status, allow", METHOD_CASES, ids=[f"{m} {p}" for m, p, _, _ in METHOD_CASES])
def test_wrong_method_or_unknown_path(method, path, status, allow, servers, influxdb):
    server = servers["default"]
    before = influxdb.count(server.db)
    got, headers, body = request(server, method, path, J(R()) if method != "GET" else None, JSON_CT)
    assert got == status, body
    assert isinstance(body, dict) and body.get("error"), body
    if allow:
        assert headers.get("allow") == allow
    assert influxdb.count(server.db) == before


# -- query parameters -------------------------------------------------------------------------------
QUERY_CASES = [
    ("/data?limit=0", "limit", "between 1 and"),
    ("/data?limit=abc", "limit", "between 1 and"),
    ("/data?limit=-1", "limit", "between 1 and"),
    ("/data?limit=1.5", "limit", "between 1 and"),
    ("/data?limit=", "limit", "between 1 and"),
    ("/data?limit=10001", "limit", "between 1 and 10000"),
    ("/data?limit=%D9%A3", "limit", "between 1 and"),  # an Arabic-Indic digit three
    ("/data?limit=%C2%B2", "limit", "between 1 and"),  # superscript two
    ("/data?from=notatime", "from", "RFC 3339"),
    ("/data?from=2017-06-25", "from", "RFC 3339"),
    ("/data?to=2017-13-01T00:00:00Z", "to", "month 13"),
    ("/data?from=2017-06-26T00:00:00Z&to=2017-06-25T00:00:00Z", "from", "later than 'to'"),
    ("/data?sensor=123", "sensor", "unknown parameter"),
    ("/data?sensor_id=1&sensor_id=2", "sensor_id", "more than once"),
    ("/data?sensor_id=bad%20input", "sensor_id", SID_MSG),
    ("/data?sensor_id=", "sensor_id", SID_MSG),
    ("/data?sensor_id=bad-input%0A", "sensor_id", SID_MSG),
    ("/data?type=1temp", "type", TYPE_MSG),
    ("/data?type=temp%0A", "type", TYPE_MSG),
    ("/sensors?type=", "type", TYPE_MSG),
    ("/sensors?sensor_id=1", "sensor_id", "unknown parameter"),
    ("/top?n=0", "n", "between 1 and 1000"),
    ("/top?n=1001", "n", "between 1 and 1000"),
    ("/top?type=te%20mp", "type", TYPE_MSG),
    ("/sensors/bad-input/histogram?bins=0", "bins", "between 1 and 100"),
    ("/sensors/bad-input/histogram?bins=101", "bins", "between 1 and 100"),
    ("/sensors/bad-input/stats?from=yesterday", "from", "RFC 3339"),
    ("/sensors/bad-input/stats?limit=1", "limit", "unknown parameter"),
    ("/sensors/bad%20input/stats", "sensor_id", SID_MSG),
    ("/sensors/" + "x" * 65 + "/histogram", "sensor_id", SID_MSG),
]


@pytest.mark.parametrize("path, fld, fragment", QUERY_CASES, ids=[c[0] for c in QUERY_CASES])
def test_bad_query_parameters(path, fld, fragment, servers):
    status, headers, body = request(servers["default"], "GET", path)
    assert status == 400, body
    assert headers.get("content-type", "").startswith("application/json")
    assert f"'{fld}'" in body["error"], body
    assert any(p["field"] == fld and fragment in p["message"] for p in body["problems"]), body


@pytest.mark.parametrize("param, value", [
    ("from", "0001-01-01T00:00:00Z"),
    ("from", "1500-01-01T00:00:00Z"),
    ("from", "1677-09-21T00:12:43.145224191Z"),  # -2**63 - 1 ns: just below int64
    ("to", "2262-04-11T23:47:16.854775808Z"),  # 2**63 ns: just above int64
    ("to", "2300-01-01T00:00:00Z"),
    ("to", "9999-12-31T23:59:59.999999999Z"),
])
@pytest.mark.parametrize("endpoint", ["/data?", "/sensors/bad-input/stats?", "/sensors/bad-input/histogram?"])
def test_valid_timestamps_outside_influxdbs_range_are_not_a_server_error(endpoint, param, value, servers):
    """RFC 3339 allows years 0000-9999; InfluxDB times are int64 ns (1677..2262). Such a bound is
    either refused as a bad parameter (400 naming it) or answered; never a 5xx."""
    status, _, body = request(servers["default"], "GET", endpoint + f"{param}={quote(value)}")
    assert status < 500, body
    if status == 400:
        assert any(p["field"] == param for p in body["problems"]), body
    else:
        assert status in (200, 404), body
