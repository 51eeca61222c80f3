"""Unit tests of the reading's pure code: `iot_api.timefmt` (RFC 3339 <-> ns) and `iot_api.readings`
(validation of a POST /data body and the line protocol it becomes). No server, no InfluxDB.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from iot_api.readings import (
    MAX_PROBLEMS,
    SENSOR_ID_PATTERN,
    TYPE_PATTERN,
    InvalidBody,
    Limits,
    check_sensor_id,
    check_type,
    parse_body,
)
from iot_api.timefmt import _minute_cache, _parse_full, format_rfc3339, ns_text, parse_duration, parse_rfc3339

S = 1_000_000_000
H = 3600 * S
FAST = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

LIMITS = Limits(max_batch=5000, min_ts_ns=parse_rfc3339("2000-01-01T00:00:00Z"), max_future_ns=H,
                retention_ns=None, measurement="data")

# One well-formed line of line protocol as the api may write it: no escapes needed, exactly one line.
LINE = re.compile(r"data,sensor_id=[A-Za-z0-9_.:-]{1,64},type=[A-Za-z][A-Za-z0-9_.-]{0,31} "
                  r"value=-?(?:\d+\.\d+(?:e[+-]\d+)?|\d+(?:\.\d+)?e[+-]\d+|inf|nan) -?\d+\n", re.ASCII)


# ------------------------------------------------------------------------------------------------
# timefmt
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, ns", [
    ("1970-01-01T00:00:00Z", 0),
    ("2017-06-25T09:53:16Z", 1498384396 * S),
    ("2017-06-25t09:53:16z", 1498384396 * S),
    ("2017-06-25T09:53:16.1Z", 1498384396 * S + 100_000_000),
    ("2017-06-25T09:53:16.000001Z", 1498384396 * S + 1_000),
    ("2017-06-25T09:53:16.123456789Z", 1498384396 * S + 123_456_789),
    ("2017-06-25T09:53:16.000000001Z", 1498384396 * S + 1),
    ("2017-06-25T11:53:16+02:00", 1498384396 * S),
    ("2017-06-25T04:23:16.5-05:30", 1498384396 * S + 500_000_000),
    ("2017-06-25T09:53:16+00:00", 1498384396 * S),
    ("2017-06-25T09:53:16-00:00", 1498384396 * S),
    ("2017-06-26T09:52:16+23:59", 1498384396 * S),
    ("1969-12-31T23:59:59.999999999Z", -1),
    ("2000-02-29T00:00:00Z", 951782400 * S),
    ("2016-02-29T12:00:00Z", 1456747200 * S),
    ("2400-02-29T00:00:00Z", 13574563200 * S),
    ("2262-04-11T23:47:16.854775807Z", 2**63 - 1),
], ids=lambda v: v if isinstance(v, str) else None)
def test_parse_rfc3339_known_values(text, ns):
    assert parse_rfc3339(text) == ns


def test_parse_rfc3339_offsets_are_the_same_instant():
    z = parse_rfc3339("2017-06-25T09:53:16.123456789Z")
    assert parse_rfc3339("2017-06-25T11:53:16.123456789+02:00") == z
    assert parse_rfc3339("2017-06-24T23:53:16.123456789-10:00") == z
    assert parse_rfc3339("2017-06-26T09:52:16.123456789+23:59") == z
    assert parse_rfc3339("2017-06-24T09:54:16.123456789-23:59") == z


@pytest.mark.parametrize("ns, text", [
    (0, "1970-01-01T00:00:00Z"),
    (1498384396 * S, "2017-06-25T09:53:16Z"),
    (1498384396 * S + 100_000_000, "2017-06-25T09:53:16.1Z"),
    (1498384396 * S + 123_456_789, "2017-06-25T09:53:16.123456789Z"),
    (1498384396 * S + 1, "2017-06-25T09:53:16.000000001Z"),
    (-1, "1969-12-31T23:59:59.999999999Z"),
    (951782400 * S, "2000-02-29T00:00:00Z"),
    (2**63 - 1, "2262-04-11T23:47:16.854775807Z"),
])
def test_format_rfc3339_known_values(ns, text):
    assert format_rfc3339(ns) == text


LOW = parse_rfc3339("0001-01-01T00:00:00Z")
HIGH = parse_rfc3339("9999-12-31T23:59:59.999999999Z")


@FAST
@given(st.integers(LOW, HIGH))
@example(0)
@example(-1)
@example(LOW)
@example(HIGH)
@example(parse_rfc3339("2000-02-29T23:59:59.999999999Z"))
def test_round_trip_ns_text_ns(ns):
    text = format_rfc3339(ns)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z", text), text
    assert parse_rfc3339(text) == ns


@FAST
@given(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=2)),
                                               dt.timezone(dt.timedelta(hours=-9, minutes=-30)),
                                               dt.timezone(dt.timedelta(hours=23, minutes=59))])),
       st.integers(0, 999))
def test_parse_agrees_with_the_standard_library(moment, extra_ns):
    """Cross-check (leap years, month lengths, offsets) against datetime, plus the 3 digits of ns
    that datetime cannot hold."""
    text = moment.isoformat(timespec="microseconds")  # 2017-06-25T09:53:16.000000+02:00
    text = text[:26] + f"{extra_ns:03d}" + text[26:]  # 9 fraction digits
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    expected = (moment - epoch) // dt.timedelta(microseconds=1) * 1000 + extra_ns
    assert parse_rfc3339(text) == expected
    assert parse_rfc3339(format_rfc3339(expected)) == expected


@FAST
@given(st.text(alphabet="0123456789.:Zz+-T \n\u0663\u00b2", max_size=14))
@example("16.Z")
@example("60Z")
@example("1\u0663Z")
@example("16.1234567890Z")
def test_cached_minute_branch_agrees_with_the_full_parse(tail):
    """parse_rfc3339 answers a known minute from a cache with its own checks: on any tail after that
    minute it must give the full regex parse's verdict (value or ValueError), never a different one."""
    prefix = "2017-06-25T09:53:"
    parse_rfc3339(prefix + "00Z")  # the minute is now cached
    text = prefix + tail
    try:
        expected = _parse_full(text)
    except ValueError:
        with pytest.raises(ValueError):
            parse_rfc3339(text)
    else:
        assert parse_rfc3339(text) == expected


@FAST
@given(st.text(alphabet="0123456789.:Zz+-T \n\u0663\u00b2", max_size=14),
       st.integers(1, 2 * 10**9), st.integers(1, 2 * 10**9))
@example("16.Z", 1, 2 * 10**9)
@example("16.123456789Z", 1, 2 * 10**9)
@example("16.1234567890Z", 1, 2 * 10**9)
@example("16Z", 1498384396, 1498384396)  # the only second allowed
@example("16Z", 1498384397, 2 * 10**9)  # one second too early
@example("16Z", 1, 1498384395)  # one second too late
def test_ns_text_is_the_full_parse_or_nothing(tail, lo_s, hi_s):
    """The fast path's timestamp as text: either exactly the full parse's nanoseconds, inside the
    seconds asked for, or None (the caller then parses in full); never a different value."""
    prefix = "2017-06-25T09:53:"
    parse_rfc3339(prefix + "00Z")  # the minute is now cached
    text = prefix + tail
    got = ns_text(text, lo_s, hi_s)
    if got is None:
        return
    ns = _parse_full(text)
    assert got == str(ns)
    assert lo_s * S <= ns < (hi_s + 1) * S


@pytest.mark.parametrize("year, leap", [(1600, True), (1900, False), (2000, True), (2016, True),
                                        (2019, False), (2100, False), (2400, True)])
def test_february_29_only_in_leap_years(year, leap):
    text = f"{year}-02-29T00:00:00Z"
    if leap:
        ns = parse_rfc3339(text)
        assert format_rfc3339(ns) == text
        assert parse_rfc3339(f"{year}-03-01T00:00:00Z") - ns == 86400 * S
    else:
        with pytest.raises(ValueError, match="day 29 does not exist"):
            parse_rfc3339(text)
    assert parse_rfc3339(f"{year}-02-28T00:00:00Z")


@pytest.mark.parametrize("text, fragment", [
    ("yesterday", "RFC 3339"),
    ("", "RFC 3339"),
    ("2017-06-25", "RFC 3339"),
    ("2017-06-25T09:53:16", "RFC 3339"),             # no offset
    ("2017-06-25 09:53:16Z", "RFC 3339"),             # space instead of T
    ("17-06-25T09:53:16Z", "RFC 3339"),
    ("2017-6-25T09:53:16Z", "RFC 3339"),
    ("2017-06-25T09:53:16.Z", "RFC 3339"),            # empty fraction
    ("2017-06-25T09:53:16.1234567890Z", "RFC 3339"),  # 10 fraction digits
    ("2017-06-25T09:53:16,5Z", "RFC 3339"),
    ("2017-06-25T09:53:16+0200", "RFC 3339"),
    ("2017-06-25T09:53:16+02", "RFC 3339"),
    (" 2017-06-25T09:53:16Z", "RFC 3339"),
    ("2017-06-25T09:53:16Z ", "RFC 3339"),
    ("2017-06-25T09:53:16Z\n", "RFC 3339"),
    ("+2017-06-25T09:53:16Z", "RFC 3339"),
    ("1498384396", "RFC 3339"),
    ("2017-00-10T00:00:00Z", "month 00"),
    ("2017-13-01T00:00:00Z", "month 13"),
    ("2017-01-00T00:00:00Z", "day 00"),
    ("2017-01-32T00:00:00Z", "day 32"),
    ("2017-02-30T00:00:00Z", "day 30"),
    ("2017-04-31T00:00:00Z", "day 31"),
    ("2017-02-29T00:00:00Z", "day 29"),
    ("2017-06-25T24:00:00Z", "time of day"),
    ("2017-06-25T25:00:00Z", "time of day"),
    ("2017-06-25T09:60:00Z", "time of day"),
    ("2016-12-31T23:59:60Z", "time of day"),          # leap second: not representable in InfluxDB
    ("2017-06-25T09:53:16+24:00", "offset"),
    ("2017-06-25T09:53:16+23:60", "offset"),
])
def test_parse_rfc3339_rejects(text, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_rfc3339(text)


@pytest.mark.parametrize("text", [
    "\u0662\u0660\u0661\u0667-06-25T09:53:16Z",   # Arabic-Indic digits for the year
    "\uff12\uff10\uff11\uff17-06-25T09:53:16Z",   # full-width digits
    "2017-06-25T09:53:16.\u0661Z",                 # Arabic-Indic digit in the fraction
], ids=["arabic-indic-year", "full-width-year", "arabic-indic-fraction"])
def test_parse_rfc3339_rejects_non_ascii_digits(text):
    """RFC 3339's DIGIT is %x30-39. `\\d` in a str regex also matches every Unicode digit and int()
    converts them, so these must be refused explicitly."""
    with pytest.raises(ValueError):
        parse_rfc3339(text)


@pytest.mark.parametrize("text, ns", [("1ns", 1), ("500ms", 500_000_000), ("30s", 30 * S), ("10m", 600 * S),
                                      ("1h", H), ("30d", 30 * 24 * H), ("2w", 14 * 24 * H),
                                      ("INF", None), ("inf", None)])
def test_parse_duration(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "1", "h", "1y", "-1h", "1.5h", "1 h", "1H", "10000000000s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


# ------------------------------------------------------------------------------------------------
# readings.parse_body
# ------------------------------------------------------------------------------------------------
def body(doc) -> bytes:
    return json.dumps(doc).encode()


def test_course_payload_becomes_one_line_of_line_protocol():
    lines, count = parse_body(
        b'{"ts": "2017-06-25T09:53:16Z", "type": "temp", "value": 34, "sensor_id": 123}', LIMITS)
    assert lines == ["data,sensor_id=123,type=temp value=34.0 1498384396000000000\n"]
    assert count == 1


def test_batch_keeps_order_and_precision():
    lines, count = parse_body(body([
        {"ts": "2017-06-25T09:53:16.123456789Z", "type": "temp", "value": 21.5, "sensor_id": "pi-1"},
        {"ts": "2017-06-25T11:53:16+02:00", "type": "humidity", "value": -3, "sensor_id": "a.b:c_d-e"},
        {"sensor_id": 7, "value": 1e-7, "type": "p.x_y-z", "ts": "2017-06-25T09:53:16Z"},
    ]), LIMITS)
    assert count == 3
    assert lines == [
        "data,sensor_id=pi-1,type=temp value=21.5 1498384396123456789\n",
        "data,sensor_id=a.b:c_d-e,type=humidity value=-3.0 1498384396000000000\n",
        "data,sensor_id=7,type=p.x_y-z value=1e-07 1498384396000000000\n",
    ]


def test_measurement_comes_from_the_limits():
    limits = Limits(5000, LIMITS.min_ts_ns, H, None, "readings")
    lines, _ = parse_body(body({"type": "temp", "value": 1, "sensor_id": 1, "ts": "2017-06-25T09:53:16Z"}), limits)
    assert lines == ["readings,sensor_id=1,type=temp value=1.0 1498384396000000000\n"]


def test_readings_without_ts_get_distinct_server_times():
    before = time.time_ns()
    lines, _ = parse_body(body([{"type": "temp", "value": 1, "sensor_id": "s"}] * 50), LIMITS)
    after = time.time_ns()
    stamps = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert stamps == sorted(set(stamps)), "two readings of one sensor would overwrite each other"
    # Microsecond steps (the digits below name the writer: readings._Clock), at most one per reading ahead.
    assert before - 1000 < stamps[0] and stamps[-1] <= after + 50 * 1000


def test_big_values_and_ids():
    lines, _ = parse_body(body([
        {"type": "t", "value": 1.7976931348623157e308, "sensor_id": 18446744073709551615},
        {"type": "t", "value": -0.0, "sensor_id": -5},
        {"type": "t", "value": 5e-324, "sensor_id": "x" * 64},
    ]), LIMITS)
    assert [line.split(" ")[1] for line in lines] == ["value=1.7976931348623157e+308", "value=-0.0", "value=5e-324"]
    assert lines[0].startswith("data,sensor_id=18446744073709551615,")
    assert lines[1].startswith("data,sensor_id=-5,")


def _problems(exc: InvalidBody):
    return [(p["index"], p["field"], p["message"]) for p in exc.problems]


@pytest.mark.parametrize("raw, status, fragment", [
    (b"", 400, "empty"),
    (b"  \n\t ", 400, "empty"),
    (b"hello", 400, "malformed JSON"),
    (b'{"type": "temp", "value": 3', 400, "malformed JSON"),
    (b'{"type":"temp","value":NaN,"sensor_id":1}', 400, "malformed JSON"),
    (b'{"type":"temp","value":Infinity,"sensor_id":1}', 400, "malformed JSON"),
    (b'{"type":"temp","value":1e400,"sensor_id":1}', 400, "infinity"),
    (b"\xef\xbb\xbf{}", 400, "malformed JSON"),
    (b'{"type":"temp","value":1,"sensor_id":"\xff"}', 400, "malformed JSON"),
    (b"[" * 5000 + b"]" * 5000, 400, "malformed JSON"),
    (b"[]", 422, "empty batch"),
    (b"null", 422, "reading object or an array"),
    (b'"temp"', 422, "reading object or an array"),
    (b"34", 422, "reading object or an array"),
    (b"true", 422, "reading object or an array"),
], ids=["empty", "whitespace", "not-json", "truncated", "NaN", "Infinity", "1e400", "bom", "bad-utf8",
        "too-deep", "empty-batch", "null", "string", "number", "bool"])
def test_parse_body_rejects_whole_body(raw, status, fragment):
    with pytest.raises(InvalidBody) as info:
        parse_body(raw, LIMITS)
    assert info.value.status == status
    assert fragment in info.value.error


GOOD = {"type": "temp", "value": 34, "sensor_id": 123}


@pytest.mark.parametrize("reading, field, fragment", [
    ({**GOOD, "value": "34"}, "value", "must be a number"),
    ({**GOOD, "value": True}, "value", "must be a number"),
    ({**GOOD, "value": None}, "value", "must be a number"),
    ({**GOOD, "value": {}}, "value", "must be a number"),
    ({"type": "temp", "sensor_id": 1}, "value", "is required"),
    ({"value": 1, "sensor_id": 1}, "type", "is required"),
    ({"type": "temp", "value": 1}, "sensor_id", "is required"),
    ({**GOOD, "unit": "C"}, "unit", "unknown field"),
    ({**GOOD, "sensor_id": "a b"}, "sensor_id", "1-64 characters"),
    ({**GOOD, "sensor_id": "a,b"}, "sensor_id", "1-64 characters"),
    ({**GOOD, "sensor_id": "a=b"}, "sensor_id", "1-64 characters"),
    ({**GOOD, "sensor_id": "a\nb"}, "sensor_id", "1-64 characters"),
    ({**GOOD, "sensor_id": "123\n"}, "sensor_id", "1-64 characters"),
    ({**GOOD, "sensor_id": ""}, "sensor_id", "1-64 characters"),
    ({**GOOD, "sensor_id": "x" * 65}, "sensor_id", "1-64 characters"),
    ({**GOOD, "sensor_id": 1.5}, "sensor_id", "string or an integer"),
    ({**GOOD, "sensor_id": True}, "sensor_id", "string or an integer"),
    ({**GOOD, "type": ""}, "type", "start with a letter"),
    ({**GOOD, "type": "te mp"}, "type", "start with a letter"),
    ({**GOOD, "type": "1temp"}, "type", "start with a letter"),
    ({**GOOD, "type": "t" * 33}, "type", "start with a letter"),
    ({**GOOD, "type": "temp\n"}, "type", "start with a letter"),
    ({**GOOD, "type": 5}, "type", "must be a string"),
    ({**GOOD, "ts": 1498384396}, "ts", "RFC 3339 string"),
    ({**GOOD, "ts": "2017-02-30T00:00:00Z"}, "ts", "day 30"),
    ({**GOOD, "ts": "1970-01-01T00:00:00Z"}, "ts", "API_MIN_TS"),
    ({**GOOD, "ts": "2999-01-01T00:00:00Z"}, "ts", "future"),
    ({**GOOD, "ts": "\u0662\u0660\u0661\u0667-06-25T09:53:16Z"}, "ts", "RFC 3339"),
], ids=["value-str", "value-bool", "value-null", "value-obj", "no-value", "no-type", "no-sensor_id",
        "extra", "sid-space", "sid-comma", "sid-eq", "sid-newline", "sid-trailing-newline", "sid-empty",
        "sid-65", "sid-float", "sid-bool", "type-empty", "type-space", "type-digit", "type-33",
        "type-trailing-newline", "type-int", "ts-number", "ts-feb30", "ts-1970", "ts-2999",
        "ts-arabic-digits"])
def test_parse_body_names_the_field(reading, field, fragment):
    with pytest.raises(InvalidBody) as info:
        parse_body(body(reading), LIMITS)
    assert info.value.status == 422
    problems = _problems(info.value)
    assert any(i is None and f == field and fragment in m for i, f, m in problems), problems
    # In a batch, the same problem carries the reading's index.
    with pytest.raises(InvalidBody) as info:
        parse_body(body([GOOD, GOOD, reading]), LIMITS)
    assert any(i == 2 and f == field for i, f, _ in _problems(info.value)), _problems(info.value)
    assert "1 of 3 readings are invalid; nothing was stored" in info.value.error


def test_retention_is_named():
    limits = Limits(5000, LIMITS.min_ts_ns, H, H, "data")
    two_hours_ago = format_rfc3339(time.time_ns() - 2 * H)
    with pytest.raises(InvalidBody) as info:
        parse_body(body({**GOOD, "ts": two_hours_ago}), limits)
    assert [(p["field"], "retention" in p["message"]) for p in info.value.problems] == [("ts", True)]
    lines, _ = parse_body(body({**GOOD, "ts": format_rfc3339(time.time_ns() - H // 2)}), limits)
    assert len(lines) == 1


@pytest.mark.parametrize("attempt", ["minute not cached yet", "minute cached"])
def test_the_oldest_accepted_nanosecond_is_exact(attempt):
    """At API_MIN_TS the fast path (whole seconds inside the limits) hands over to an exact check:
    the limit itself is accepted, one nanosecond before it refused, whether the minute is cached or not."""
    limit = parse_rfc3339("2011-03-04T05:06:07.5Z")
    limits = Limits(5000, limit, H, None, "data")
    minute = "2011-03-04T05:06"

    def parse(ts):  # each parse meets the minute cache in the state the parameter names
        if attempt == "minute cached":
            parse_rfc3339(minute + ":00Z")
        else:
            _minute_cache.pop(minute, None)
        assert (minute in _minute_cache) == (attempt == "minute cached")
        return parse_body(body({**GOOD, "ts": ts}), limits)[0]

    assert parse("2011-03-04T05:06:07.500000000Z")[0].endswith(f" {limit}\n")
    with pytest.raises(InvalidBody):
        parse("2011-03-04T05:06:07.499999999Z")
    assert parse("2011-03-04T05:06:08.25Z")[0].endswith(f" {limit + 750_000_000}\n")  # the next second


def test_batch_limit():
    limits = Limits(10, LIMITS.min_ts_ns, H, None, "data")
    assert parse_body(body([GOOD] * 10), limits)[1] == 10
    with pytest.raises(InvalidBody) as info:
        parse_body(body([GOOD] * 11), limits)
    assert info.value.status == 413 and "API_MAX_BATCH" in info.value.error


def test_problems_are_capped_and_counted():
    with pytest.raises(InvalidBody) as info:
        parse_body(body([{**GOOD, "value": "x"}] * 100), LIMITS)
    assert len(info.value.problems) == MAX_PROBLEMS
    assert "100 of 100 readings are invalid" in info.value.error


def test_every_problem_of_a_reading_is_listed():
    with pytest.raises(InvalidBody) as info:
        parse_body(body([GOOD, {"sensorId": 1, "value": "x", "type": "9", "ts": "now"}]), LIMITS)
    fields = sorted(f for _, f, _ in _problems(info.value))
    assert fields == ["sensorId", "sensor_id", "ts", "type", "value"]
    assert {i for i, _, _ in _problems(info.value)} == {1}


@pytest.mark.parametrize("check, value", [
    (check_sensor_id, "123\n"), (check_sensor_id, "a" * 64 + "\n"),
    (check_type, "temp\n"), (check_type, "t" * 32 + "\n"),
], ids=["sensor_id", "sensor_id-64", "type", "type-32"])
def test_check_functions_refuse_a_trailing_newline(check, value):
    """`$` in a Python regex also matches just before a final newline; a tag value ending in "\\n"
    would split the line protocol in two."""
    check(value.rstrip("\n"))
    with pytest.raises(ValueError):
        check(value)


# -- properties ----------------------------------------------------------------------------------
sensor_ids = st.one_of(st.integers(-(2**63), 2**64 - 1), st.from_regex(SENSOR_ID_PATTERN))
types = st.from_regex(TYPE_PATTERN)
values = st.one_of(st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False))
readings = st.fixed_dictionaries({"type": types, "value": values, "sensor_id": sensor_ids},
                                 optional={"ts": st.integers(LIMITS.min_ts_ns, time.time_ns()).map(format_rfc3339)})


@FAST
@given(st.lists(readings, min_size=1, max_size=5))
@example([{"type": "temp", "value": 1, "sensor_id": "123\n"}])
@example([{"type": "temp\n", "value": 1, "sensor_id": "1"}])
def test_accepted_readings_become_exactly_one_clean_line_each(batch):
    """Whatever parse_body accepts must be one well-formed line per reading: no character that line
    protocol would need to escape, no line break inside a tag."""
    try:
        lines, count = parse_body(body(batch), LIMITS)
    except InvalidBody:
        return
    assert count == len(batch) == len(lines)
    for line in lines:
        assert LINE.fullmatch(line), repr(line)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["ts", "type", "value", "sensor_id", "x", ""]) | st.text(max_size=5), inner, max_size=5),
    max_leaves=12,
)


@FAST
@given(st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)))
def test_any_body_is_either_lines_or_a_4xx(raw):
    """Never an exception other than InvalidBody (which the api answers as a 4xx)."""
    try:
        lines, count = parse_body(raw, LIMITS)
    except InvalidBody as exc:
        assert exc.status in (400, 413, 422)
        assert exc.error
        for p in exc.problems:
            assert set(p) == {"index", "field", "message"}
        return
    assert len(lines) == count >= 1


def test_a_valid_sensor_id_is_not_thereby_a_valid_type():
    """Validated tag values are memoised per field: a sensor id seen before must not pass as a type."""
    from iot_api.readings import InvalidBody, Limits, parse_body

    limits = Limits(max_batch=10, min_ts_ns=0, max_future_ns=3600 * 10**9, retention_ns=None, measurement="data")
    parse_body(b'{"type": "temp", "value": 1, "sensor_id": "9:x"}', limits)  # "9:x" now memoised
    with pytest.raises(InvalidBody) as err:
        parse_body(b'{"type": "9:x", "value": 1, "sensor_id": "9:x"}', limits)
    assert [p["field"] for p in err.value.problems] == ["type"]


@settings(max_examples=3000, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["2026-01-01T10:00", "2026-01-01T10:59", "1999-12-31T23:59"]),
       st.text(alphabet="0123456789:.Zz+-T ٠١a", max_size=16))
def test_minute_cache_agrees_with_the_full_parse(prefix, tail):
    """The cached-minute fast path of parse_rfc3339 gives the full parse's answer, value or error."""
    from iot_api import timefmt

    timefmt._parse_full(prefix + ":00Z")  # the prefix is now cached
    text = prefix + tail

    def outcome(parse):
        try:
            return parse(text)
        except ValueError:
            return "error"

    assert outcome(timefmt.parse_rfc3339) == outcome(timefmt._parse_full)
    assert outcome(timefmt.parse_rfc3339) == outcome(timefmt.parse_rfc3339)  # and again, cache warm


def test_a_cached_minute_prefix_alone_is_an_error_not_a_crash():
    from iot_api import timefmt

    timefmt._parse_full("2026-01-01T10:00:00Z")
    for text in ("2026-01-01T10:00", "2026-01-01T10:00:", "2026-01-01T10:00:0", "2026-01-01T10:00:00"):
        with pytest.raises(ValueError):
            timefmt.parse_rfc3339(text)
