"""The api's two reading validators give one verdict (issue #14: "one rule in several places").

`iot_api.readings.parse_body` first tries `_fast_lines` (msgspec, in C), which only recognizes bodies valid
in every respect and returns None for anything else; then the full check (orjson + hand validation) decides
and explains. A reading accepted by one path and refused by the other would be a silent rule split. So, for
generated bodies, valid and near-valid (wrong types, missing, extra and repeated fields, escaped keys,
out-of-range numbers and times, bad `ts` strings, unicode, big integers, "nan"/"inf" as strings, booleans,
nested values, batches, broken JSON):

- fast accepts  => the full check accepts with the same lines (server times aside: each call stamps its own);
- full accepts  => fast accepts too, except where the module says the fast path hands over on purpose
                   (an integer sensor id beyond int64, msgspec's bound);
- the full check refuses only with InvalidBody and a 4xx. The fast path gives no reason (None), so only
  the verdicts can be compared, not the refusal messages.

A reading naming a field twice: its last copy counts, whichever path decides; the fast path hands the body
over when an earlier copy has a wrong type (msgspec checks every copy), which is a hand-over, not a second rule
(test_a_repeated_field_counts_its_last_copy).
"""
from __future__ import annotations

import datetime as dt
import json
import time
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from iot_api import readings
from iot_api.readings import InvalidBody, Limits, parse_body
from iot_api.timefmt import parse_rfc3339

S = 1_000_000_000
MIN_TS = parse_rfc3339("2000-01-01T00:00:00Z")
INT64 = range(-(2**63), 2**63)
SERVER_TIME = "<server time>"
MARGIN = 5 * S  # generated times keep this far from a bound that moves with the clock (now - retention, now + future)

# A few shapes of settings: fixed lower bound; a retention window (a moving lower bound); a bound before 1970
# and single-reading batches (the MQTT services' limits).
LIMITS = [
    Limits(max_batch=4, min_ts_ns=MIN_TS, max_future_ns=3600 * S, retention_ns=None, measurement="data"),
    Limits(max_batch=4, min_ts_ns=MIN_TS, max_future_ns=3600 * S, retention_ns=30 * 86400 * S, measurement="readings"),
    Limits(max_batch=1, min_ts_ns=-(10 * 365 * 86400 * S), max_future_ns=300 * S, retention_ns=None, measurement="m"),
]


# -- the two paths -------------------------------------------------------------------------------
def fast_path(body: bytes, limits: Limits):
    return readings._fast_lines(body, limits)


def full_check(body: bytes, limits: Limits):
    """parse_body with the fast path switched off: the full check's own verdict (lines, count) or the
    InvalidBody it raises. The switch is the only way to reach that code alone without changing api/."""
    with mock.patch.object(readings, "_fast_lines", lambda body, limits: None):
        try:
            return parse_body(body, limits)
        except InvalidBody as exc:
            return exc


def normalized(lines: list[str], body: bytes) -> list[str]:
    """The lines with the timestamp of each reading sent without `ts` replaced: server time differs per call."""
    doc = orjson.loads(body)
    items = [doc] if type(doc) is dict else doc
    assert len(items) == len(lines)
    return [line.rsplit(" ", 1)[0] + " " + SERVER_TIME if "ts" not in item else line
            for line, item in zip(lines, items, strict=True)]


def handed_over_on_purpose(body: bytes) -> bool:
    """Bodies the fast path leaves to the full check by design (readings._Reading's docstring)."""
    doc = orjson.loads(body)
    items = [doc] if type(doc) is dict else doc
    return any(type(item.get("sensor_id")) is int and item["sensor_id"] not in INT64 for item in items)


def repeats_a_key(body: bytes) -> bool:
    """A reading that names a field twice (test_a_repeated_field_counts_its_last_copy)."""
    repeated = False

    def pairs(items):
        nonlocal repeated
        repeated |= len({key for key, _ in items}) < len(items)
        return dict(items)

    json.loads(body, object_pairs_hook=pairs)
    return repeated


def check_agreement(body: bytes, limits: Limits) -> None:
    fast = fast_path(body, limits)
    again = fast_path(body, limits)  # the minute cache and the tag memos are warm now: the other branches
    full = full_check(body, limits)
    if isinstance(full, InvalidBody):
        assert full.status in (400, 413, 422) and full.error, full
    else:
        assert len(full[0]) == full[1] >= 1
    assert (fast is None) == (again is None), f"the fast path changed its mind on a second call: {body!r}"
    if fast is not None:
        assert not isinstance(full, InvalidBody), (
            f"fast path accepts, full check refuses ({full.status} {full.error} {full.problems}): {body!r}")
        assert fast[1] == full[1]
        assert normalized(fast[0], body) == normalized(again[0], body) == normalized(full[0], body), body
    elif not isinstance(full, InvalidBody) and not repeats_a_key(body):  # a hand-over: test_a_repeated_field_...
        assert handed_over_on_purpose(body), f"full check accepts, fast path refuses: {body!r}"
    # And the real dispatch says the same as the full check.
    try:
        real = parse_body(body, limits)
    except InvalidBody as exc:
        assert isinstance(full, InvalidBody) and exc.status == full.status, body
    else:
        assert not isinstance(full, InvalidBody) and normalized(real[0], body) == normalized(full[0], body), body


# -- generated bodies ----------------------------------------------------------------------------
def json_text(value) -> str:
    return json.dumps(value)


@st.composite
def json_string(draw, text: str) -> str:
    """TEXT as a JSON string, in one of the spellings JSON allows (raw unicode, \\u escapes)."""
    out = json.dumps(text, ensure_ascii=draw(st.booleans()))
    if len(text) and draw(st.integers(0, 4)) == 0:  # one plain character spelled \\u00XX
        i = draw(st.integers(0, len(text) - 1))
        if text[i].isascii() and text[i].isalnum():
            out = json.dumps(text[:i])[:-1] + f"\\u{ord(text[i]):04x}" + json.dumps(text[i + 1:])[1:]
    return out


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
).map(json_text)
NUMBER_STRINGS = st.sampled_from(["1.5", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "34", ""]).map(json_text)
WRONG = st.one_of(st.sampled_from(["null", "true", "false", "{}", "[]", '{"value": 1}', "[1]"]), NUMBER_STRINGS, ANY_JSON)

TYPE_OK = st.one_of(st.sampled_from(["temp", "pressure", "humidity", "t", "a.b-c_D9"]),
                    st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,31}", fullmatch=True))
TYPE_NEAR = st.one_of(st.sampled_from(["temp\n", "", "1temp", "_t", "a" * 33, "tëmp", "temp ", "te,mp", "te=mp", "ｔemp"]),
                      st.text(max_size=40))
SENSOR_STR_OK = st.one_of(st.sampled_from(["123", "pi-01", "a:b.c_d", "x" * 64]),
                          st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True))
SENSOR_STR_NEAR = st.one_of(st.sampled_from(["", "x" * 65, "12 3", "12\n", "a/b", "a,b", "é", "١٢٣"]), st.text(max_size=70))
BIG_INTS = st.one_of(st.integers(-(2**63) - 3, -(2**63) + 3), st.integers(2**63 - 3, 2**63 + 3),
                     st.integers(2**64 - 3, 2**64 + 3), st.integers(-(2**80), 2**80), st.integers(10**300, 10**310))
SENSOR_INT = st.one_of(st.integers(-1000, 10**6), st.integers(-(2**63), 2**63 - 1), BIG_INTS)
NUMBER_LITERALS = st.sampled_from([
    "0", "-0", "-0.0", "1E+2", "1e-0", "1e308", "1.7976931348623157e308", "1.7976931348623159e308", "1e400", "-1e400",
    "4e-324", "2e-324", "2.4703282292062328e-324", "0.1000000000000000055511151231257827",
    "9007199254740993", "9007199254740993.0000000000000000001", "01", "1.", ".5", "+1", "-", "1e", "0x10",
    "NaN", "Infinity", "-Infinity",
])
JSON_NUMBERS = st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,2})?", fullmatch=True)
VALUE_OK = st.one_of(st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=False, allow_infinity=False).map(repr),
                     JSON_NUMBERS, NUMBER_LITERALS, BIG_INTS.map(str))


def utc_text(ns: int, zone: str, digits: int, t: str) -> str:
    """ns as RFC 3339: zone "Z", "z" or "+HH:MM"/"-HH:MM" (the local time shifted to match), DIGITS of fraction."""
    secs, frac = divmod(ns, S)
    offset = 0
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    moment = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=secs + offset)
    text = f"{moment.year:04d}-{moment:%m-%d}{t}{moment:%H:%M:%S}"  # %Y is not zero-padded below 1000
    if digits:
        text += "." + f"{frac:09d}"[:digits] if digits <= 9 else "." + f"{frac:09d}" + "0" * (digits - 9)
    return text + zone


@st.composite
def ts_ok_or_near(draw, limits: Limits) -> str:
    """An RFC 3339 text around the interesting instants: the fixed lower bound, now, the moving bounds, far."""
    now = time.time_ns()
    kind = one_of_weighted(draw, now=4, course=1, moving=2, fixed=2, anywhere=2)
    if kind == "now":        # recent past, now, the near future
        ns = now + draw(st.integers(-2 * 86400 * S, 2 * 3600 * S))
    elif kind == "course":   # the course's reading
        ns = 1498384396 * S + draw(st.integers(0, S - 1))
    elif kind == "moving":   # around the moving bounds, but never close enough to flip between two calls
        bound = now + limits.max_future_ns if limits.retention_ns is None or draw(st.booleans()) \
            else now - limits.retention_ns
        ns = bound + draw(st.sampled_from([-1, 1])) * draw(st.integers(MARGIN, 120 * S))
    elif kind == "fixed":    # at the fixed lower bound (exact: it does not move with the clock)
        ns = limits.min_ts_ns + draw(st.integers(-2 * S, 2 * S))
    else:                    # anywhere in years 1..9999 (InfluxDB's int64 ns cover 1677..2262)
        ns = draw(st.integers(-62135596800 * S, 253402214400 * S))
    bounds = [now + limits.max_future_ns] + ([now - limits.retention_ns] if limits.retention_ns else [])
    if any(abs(ns - b) < MARGIN for b in bounds):
        ns = bounds[0] + MARGIN + S
    zone = draw(st.sampled_from(["Z", "Z", "Z", "z", "+00:00", "-00:00", "+02:00", "-05:30", "+23:59"]))
    digits = draw(st.sampled_from([0, 0, 1, 3, 6, 9, 10]))
    try:
        return utc_text(ns, zone, digits, draw(st.sampled_from(["T", "T", "t"])))
    except OverflowError:  # outside datetime's years once shifted by the offset
        return utc_text(1498384396 * S, zone, digits, "T")


TS_NEAR = st.one_of(st.sampled_from([
    "2017-06-25T09:53:60Z", "2017-13-25T09:53:16Z", "2017-06-31T09:53:16Z", "2023-02-29T00:00:00Z",
    "2017-06-25T24:00:00Z", "2017-06-25T09:53:16+24:00", "2017-06-25T09:53:16", "2017-06-25 09:53:16Z",
    "2017-06-25", "٢٠١٧-06-25T09:53:16Z", "2017-06-25T09:53:16Z\n", "2017-06-25T09:53:16.Z", "", "now",
    "2017-06-25T09:53:16.1234567890Z", "2017-06-25T09:53:16ZZ", "+2017-06-25T09:53:16Z", "1498384396",
]), st.text(max_size=32))


def one_of_weighted(draw, **weights: int) -> str:
    """A name drawn with the given weights. Name the common case first: hypothesis favours the bounds of an
    integer and the first of a sampled list, so st.integers(0, 9) == 0 is far likelier than one in ten."""
    return draw(st.sampled_from([name for name, n in weights.items() for _ in range(n)]))


@st.composite
def field(draw, ok, near, p_ok: int = 16):
    """The JSON text of a field: mostly valid, else near-valid or of a wrong JSON type."""
    pick = one_of_weighted(draw, ok=p_ok, near=2, wrong=2)
    return draw(ok) if pick == "ok" else draw(near) if pick == "near" else draw(WRONG)


@st.composite
def reading(draw, limits: Limits) -> str:
    """One reading object as JSON text."""
    sensor = st.one_of(SENSOR_INT.map(str), SENSOR_STR_OK.flatmap(json_string))
    fields = {
        "type": draw(field(TYPE_OK.flatmap(json_string), TYPE_NEAR.flatmap(json_string))),
        "value": draw(field(VALUE_OK, NUMBER_STRINGS)),
        "sensor_id": draw(field(sensor, SENSOR_STR_NEAR.flatmap(json_string))),
        "ts": draw(field(ts_ok_or_near(limits).flatmap(json_string), TS_NEAR.flatmap(json_string))),
    }
    pairs = []
    for key, text in fields.items():
        if one_of_weighted(draw, present=20, absent=6 if key == "ts" else 1) == "absent":
            continue  # ts is optional: often left out; the others rarely
        pairs.append((key, text))
    extra = one_of_weighted(draw, no=16, unknown=2, twice=2)
    if extra == "unknown":
        name = draw(st.sampled_from(["TS", "Type", "value ", "sensor-id", "", "unit", "id"]) | st.text(max_size=6))
        pairs.append((name, draw(WRONG | VALUE_OK)))
    elif extra == "twice" and pairs:  # a field twice (JSON leaves it to the parser: both here keep the last)
        key, _ = draw(st.sampled_from(pairs))
        pairs.append((key, draw(field(VALUE_OK if key == "value" else st.just('"temp"'), WRONG, p_ok=6))))
    pairs = draw(st.permutations(pairs))
    sep = draw(st.sampled_from([",", ", ", ",\n  "]))
    return "{" + sep.join(f"{draw(json_string(key))}:{text}" for key, text in pairs) + "}"


@st.composite
def bodies(draw) -> tuple[bytes, Limits]:
    limits = draw(st.sampled_from(LIMITS))
    shape = one_of_weighted(draw, single=10, batch=9, other=1)
    if shape == "single":
        text = draw(reading(limits))
    elif shape == "batch":
        item = reading(limits) | st.sampled_from(["1", '"x"', "null", "[]", "{}"])
        items = draw(st.lists(item if one_of_weighted(draw, mixed=1, readings=5) == "mixed" else reading(limits),
                              min_size=0, max_size=limits.max_batch + 1))
        text = "[" + ",".join(items) + "]"
    else:
        text = draw(st.sampled_from(["null", "1", '"reading"', "true", "[[]]", "", " "]))
    text = draw(st.sampled_from(["", " ", "\n", "\t"])) + text + draw(st.sampled_from(["", "\n", " \r\n"]))
    body = text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes that are not UTF-8
    damage = one_of_weighted(draw, none=37, cut=1, before=1, after=1)
    if damage == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif damage == "before":
        body = draw(st.sampled_from([b"\xef\xbb\xbf", b"\x00", b"\x0c"])) + body
    elif damage == "after":
        body += draw(st.sampled_from([b"x", b",", b"}", b"\x00", b"{}", b"\xff"]))
    return body, limits


AGREE = settings(max_examples=1000, derandomize=True, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

COURSE = b'{"ts": "2017-06-25T09:53:16Z", "type": "temp", "value": 34, "sensor_id": 123}'


@AGREE
@given(bodies())
@example((COURSE, LIMITS[0]))
@example((b'[{"type":"temp","value":1,"sensor_id":9223372036854775808}]', LIMITS[0]))  # handed over on purpose
@example((b'{"type":"temp","value":1,"sensor_id":18446744073709551616}', LIMITS[0]))  # orjson: a float
@example((b'{"type":"temp","value":1180591620717411303424,"sensor_id":1}', LIMITS[0]))  # beyond uint64
@example((b'{"type":"t","type":"temp\\n","value":1,"sensor_id":1}', LIMITS[0]))  # both see the last copy
@example((b'{"t\\u0079pe":"temp","value":1,"sensor_id":"\\u0041"}', LIMITS[0]))
@example((b'{"type":"temp","value":1,"sensor_id":1,"ts":"1999-12-31T23:59:59.999999999Z"}', LIMITS[0]))
@example((b'{"type":"temp","value":1,"sensor_id":1,"ts":"2000-01-01T00:00:00Z"}', LIMITS[0]))
@example((b'[]', LIMITS[0]))
def test_fast_path_and_full_check_give_one_verdict(case):
    body, limits = case
    check_agreement(body, limits)


@pytest.mark.parametrize("body, stored_type", [
    (b'{"type":"hum","type":"temp","value":1,"sensor_id":1}', "temp"),  # both copies valid: the fast path
    (b'{"type":null,"type":"temp","value":1,"sensor_id":1}', "temp"),  # a wrong earlier copy: handed over
    (b'{"type":"temp","type":null,"value":1,"sensor_id":1}', None),  # a wrong last copy: refused
    (b'[{"value":"x","type":"temp","value":2,"sensor_id":1}]', "temp"),
])
def test_a_repeated_field_counts_its_last_copy(body, stored_type):
    """The api's one rule for a field named twice: the last copy, as the full check (orjson) reads it."""
    full = full_check(body, LIMITS[0])
    try:
        real = parse_body(body, LIMITS[0])
    except InvalidBody as exc:
        assert stored_type is None and isinstance(full, InvalidBody) and exc.status == full.status == 422, body
        return
    assert stored_type is not None, f"stored a reading whose last copy is invalid: {body!r}"
    assert f",type={stored_type} " in real[0][0] and normalized(real[0], body) == normalized(full[0], body)
    fast = fast_path(body, LIMITS[0])
    assert fast is None or normalized(fast[0], body) == normalized(real[0], body)


def test_the_agreement_check_can_fail():
    """A fast path that accepted what the full check refuses, or wrote another line, is caught."""
    good = b'{"type":"temp","value":1,"sensor_id":1,"ts":"2017-06-25T09:53:16Z"}'
    bad = b'{"type":"temp","value":1,"sensor_id":1,"ts":"1999-06-25T09:53:16Z"}'  # before 2000: refused
    lines = ["data,sensor_id=1,type=temp value=1.0 1498384396000000000\n"]
    for body, fake in ((bad, (lines, 1)), (good, ([lines[0].replace("1.0", "2.0")], 1)), (good, None)):
        with mock.patch.object(readings, "_fast_lines", lambda b, lim, fake=fake: fake):
            try:
                check_agreement(body, LIMITS[0])
            except AssertionError:
                continue
        raise AssertionError(f"a disagreement went unnoticed: {body!r} -> {fake!r}")
