"""The reading: validation of a POST /data body and its InfluxDB line protocol.

Wire format (the course's, unchanged): {"ts": "2017-06-25T09:53:16Z", "type": "temp", "value": 34,
"sensor_id": 123}, or a JSON array of such objects. Storage: `sensor_id` and `type` are tags, `value`
a float field, `ts` the timestamp in ns; so a resent reading is the same point and overwrites itself.

Two paths, one verdict. The fast path (msgspec: JSON decoding and type/pattern checks in C) only
recognizes bodies that are valid in every respect and builds their lines; anything it does not
recognize goes to the full check (orjson + hand validation), which is the one place that explains
problems, naming each field. This is the api's hot path: docs/benchmarks.md has the figures.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Annotated

import msgspec
import orjson

from .timefmt import NS_PER_S, format_rfc3339, ns_text, parse_rfc3339

FIELDS = ("ts", "type", "value", "sensor_id")
REQUIRED = ("type", "value", "sensor_id")
_FIELD_SET = frozenset(FIELDS)
_ABSENT = object()
# Tag values are restricted to characters that need no escaping in line protocol and are safe in URLs,
# file names and Grafana variables; a newline or an empty value would break the write.
TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$"
SENSOR_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
# fullmatch, not match: `$` also matches before a trailing newline, which would break line protocol.
_TYPE_RE = re.compile(TYPE_PATTERN)
_SENSOR_RE = re.compile(SENSOR_ID_PATTERN)
MAX_PROBLEMS = 20  # a batch of 5000 bad readings should not produce a megabyte of errors


class _Reading(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The fast path's view of a reading: types and fields checked by msgspec in C. Tag patterns are
    checked afterwards against memoised sets of valid values (a fleet has few distinct types and
    sensor ids): msgspec applies a pattern by calling `re.search` per value, 0.9 us per reading for
    the two tags, 40% of the whole path (measured). Integer sensor ids beyond int64 (msgspec's
    bound limit) go to the full check, which takes what orjson keeps as int (up to 2**64 - 1).
    A field named twice in one reading: its last copy counts, on both paths (msgspec and orjson both
    keep the last), except that msgspec type-checks every copy, so a wrong earlier copy hands the body
    to the full check, which stores the last copy too (tests/unit/test_readings_validators_agree.py).
    gc=False: a reading holds only str, int and float (no cycles possible); untracked, a batch of
    1,000 costs 12% less CPU per reading (measured under wrk)."""

    type: str
    value: float  # accepts JSON integers, refuses booleans; 1e400 is refused as out of range
    sensor_id: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | str
    ts: str | msgspec.UnsetType = msgspec.UNSET  # absent: server time; null is refused


_fast_decoder = msgspec.json.Decoder(list[_Reading] | _Reading)


@dataclass(frozen=True)
class Limits:
    max_batch: int
    min_ts_ns: int
    max_future_ns: int
    retention_ns: int | None  # None: data is kept forever
    measurement: str


class InvalidBody(Exception):
    """The request cannot be stored as sent; `status` is the 4xx to answer."""

    def __init__(self, status: int, error: str, problems: list[dict] | None = None):
        super().__init__(error)
        self.status = status
        self.error = error
        self.problems = problems or []

    def body(self) -> dict:
        out = {"error": self.error}
        if self.problems:
            out["problems"] = self.problems
        return out


WRITER_IDS = 1000  # the ns digits below the microsecond of a server time name its writer


class _Clock:
    """Server time for readings without `ts`. Two such readings of one sensor must never land on the
    same point, where the second would silently overwrite the first. Within a process the clock is
    strictly increasing; across processes (uvicorn workers, Swarm replicas: each its own clock) the
    digits below the microsecond are the writer's id, so two writers never make the same timestamp.
    Server time is thus microsecond-accurate; the 10-minute soak of `./iot bench` lost 61 of 8 million
    readings to same-nanosecond collisions between two workers before this."""

    def __init__(self, writer_id: int = 0):
        self.writer_id = writer_id
        self.last = 0

    def set_writer(self, writer_id: int) -> None:
        if not 0 <= writer_id < WRITER_IDS:
            raise ValueError(f"writer id {writer_id} out of range 0..{WRITER_IDS - 1}")
        self.writer_id = writer_id
        self.last = 0

    def next(self) -> int:
        now = time.time_ns()
        now += self.writer_id - now % WRITER_IDS
        if now <= self.last:
            now = self.last + WRITER_IDS
        self.last = now
        return now


_clock = _Clock()


def set_writer_id(writer_id: int) -> None:
    """This process's id among every process that writes to the same database (see _Clock)."""
    _clock.set_writer(writer_id)


def check_sensor_id(raw) -> str:
    """The tag value of a sensor id (int or string); ValueError with the reason."""
    t = type(raw)
    if t is int:
        return str(raw)
    if t is str:
        if _SENSOR_RE.fullmatch(raw):
            return raw
        raise ValueError("must be 1-64 characters among letters, digits and _ . : -")
    raise ValueError("must be a string or an integer")


def check_type(raw) -> str:
    if type(raw) is str and _TYPE_RE.fullmatch(raw):
        return raw
    if type(raw) is not str:
        raise ValueError("must be a string")
    raise ValueError("must start with a letter and use at most 32 letters, digits and _ . -")


def parse_body(body: bytes, limits: Limits) -> tuple[list[str], int]:
    """Validate a POST /data body; return (line protocol lines, number of readings).

    All or nothing: one bad reading refuses the whole request with every problem listed (up to
    MAX_PROBLEMS), so a client never has to guess which part was stored.
    """
    fast = _fast_lines(body, limits)
    if fast is not None:
        return fast
    if not body.strip():
        raise InvalidBody(400, "request body is empty: send a reading object or an array of readings")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidBody(400, f"malformed JSON: {exc}") from None
    if type(doc) is dict:
        items, single = [doc], True
    elif type(doc) is list:
        items, single = doc, False
        if not items:
            raise InvalidBody(422, "empty batch: send at least one reading")
        if len(items) > limits.max_batch:
            raise InvalidBody(413, f"batch of {len(items)} readings exceeds the maximum of "
                                   f"{limits.max_batch} (API_MAX_BATCH)")
    else:
        raise InvalidBody(422, "body must be a reading object or an array of readings",
                          [{"index": None, "field": "", "message": f"got a JSON {_json_kind(doc)}"}])

    now = time.time_ns()
    oldest = max(limits.min_ts_ns, now - limits.retention_ns) if limits.retention_ns else limits.min_ts_ns
    newest = now + limits.max_future_ns
    prefix = limits.measurement + ",sensor_id="
    lines: list[str] = []
    problems: list[dict] = []
    n_bad = 0
    for i, item in enumerate(items):
        errs, ns = _check_item(item, None if single else i, oldest, newest, limits)
        if errs:
            n_bad += 1
            if len(problems) < MAX_PROBLEMS:
                problems.extend(errs[: MAX_PROBLEMS - len(problems)])
            continue
        if n_bad:  # keep validating to report every problem, but stop building lines
            continue
        sid = item["sensor_id"]
        # Tags written in sorted key order (sensor_id < type): InfluxDB sorts them otherwise.
        lines.append(f"{prefix}{sid if type(sid) is str else str(sid)},type={item['type']} "
                     f"value={float(item['value'])!r} {ns if ns is not None else _clock.next()}\n")
    if n_bad:
        what = "the reading is invalid" if single else f"{n_bad} of {len(items)} readings are invalid"
        raise InvalidBody(422, f"{what}; nothing was stored", problems)
    return lines, len(items)


def _fast_lines(body: bytes, limits: Limits) -> tuple[list[str], int] | None:
    """Lines of a body valid in every respect, or None to let the full check decide and explain."""
    try:
        doc = _fast_decoder.decode(body)
    except (msgspec.DecodeError, ValueError):  # validation errors too; invalid UTF-8 is a ValueError
        return None
    readings = [doc] if type(doc) is _Reading else doc
    if not readings or len(readings) > limits.max_batch:
        return None
    now = time.time_ns()
    oldest = max(limits.min_ts_ns, now - limits.retention_ns) if limits.retention_ns else limits.min_ts_ns
    newest = now + limits.max_future_ns
    # Whole seconds strictly within [oldest, newest]: there ns_text's answer needs no exact check.
    lo_s, hi_s = max(1, -(-oldest // NS_PER_S)), newest // NS_PER_S - 1
    prefix = limits.measurement + ",sensor_id="
    lines = []
    valid_types, valid_sensor_ids = _valid_types, _valid_sensor_ids
    for r in readings:
        value = r.value
        if value - value != 0.0:  # infinite (NaN cannot come from JSON)
            return None
        if r.type not in valid_types and not _remember(_TYPE_RE, valid_types, r.type):
            return None
        sid = r.sensor_id
        if type(sid) is str and sid not in valid_sensor_ids and not _remember(_SENSOR_RE, valid_sensor_ids, sid):
            return None
        ts = r.ts
        if ts is msgspec.UNSET:
            ns = _clock.next()
        else:
            ns = ns_text(ts, lo_s, hi_s)
            if ns is None:  # a first sight of its minute, another form, or near a limit: exactly
                try:
                    ns = parse_rfc3339(ts)
                except ValueError:
                    return None
                if ns < oldest or ns > newest:
                    return None
        # Tags in sorted key order (sensor_id < type), which InfluxDB would otherwise sort.
        lines.append(f"{prefix}{sid},type={r.type} value={value!r} {ns}\n")
    return lines, len(readings)


def _check_item(item, index, oldest: int, newest: int, limits: Limits) -> tuple[list[dict], int | None]:
    """(problems, timestamp in ns or None when absent) of one reading; no problems when it is valid."""
    if type(item) is not dict:
        return [{"index": index, "field": "", "message": f"must be a reading object, got a JSON {_json_kind(item)}"}], None
    errs = []
    ns = None
    if len(item) > 4 or not item.keys() <= _FIELD_SET:
        for key in item:
            if key not in FIELDS:
                errs.append({"index": index, "field": str(key),
                             "message": "unknown field (allowed: ts, type, value, sensor_id)"})
    for key in REQUIRED:
        if key not in item:
            errs.append({"index": index, "field": key, "message": "is required"})

    # Happy path inline (this runs per reading); the checkers give the message when it fails.
    kind = item.get("type", _ABSENT)
    if kind is not _ABSENT and not (type(kind) is str and
                                    (kind in _valid_types or _remember(_TYPE_RE, _valid_types, kind))):
        errs.append({"index": index, "field": "type", "message": _why(check_type, kind)})
    sid = item.get("sensor_id", _ABSENT)
    if sid is not _ABSENT and not (
            type(sid) is int
            or (type(sid) is str and (sid in _valid_sensor_ids or _remember(_SENSOR_RE, _valid_sensor_ids, sid)))):
        errs.append({"index": index, "field": "sensor_id", "message": _why(check_sensor_id, sid)})
    if "value" in item:
        v = item["value"]
        tv = type(v)
        if tv is not float and tv is not int:  # bool is not int here: `type(True) is int` is False
            errs.append({"index": index, "field": "value", "message": "must be a number"})
        elif not math.isfinite(v) or (tv is int and abs(v) > 1.7e308):
            errs.append({"index": index, "field": "value", "message": "must be a finite number"})
    if "ts" in item:
        ts = item["ts"]
        if type(ts) is not str:
            errs.append({"index": index, "field": "ts", "message": "must be an RFC 3339 string (or be left out for server time)"})
        else:
            try:
                ns = parse_rfc3339(ts)
            except ValueError as exc:
                errs.append({"index": index, "field": "ts", "message": str(exc)})
            else:
                if ns < oldest:
                    if limits.retention_ns and ns >= limits.min_ts_ns:
                        msg = (f"is older than the retention policy keeps (oldest accepted now: "
                               f"{format_rfc3339(oldest)}); it would be dropped")
                    else:
                        msg = (f"is before {format_rfc3339(limits.min_ts_ns)} (API_MIN_TS): "
                               "is the device clock set?")
                    errs.append({"index": index, "field": "ts", "message": msg})
                elif ns > newest:
                    errs.append({"index": index, "field": "ts",
                                 "message": f"is in the future (later than {format_rfc3339(newest)}, "
                                            "API_MAX_FUTURE): is the device clock set?"})
    return errs, ns


# Tag values already found valid, one set per field: devices repeat their sensor id and types in
# every reading, so a set lookup replaces a regex match. Bounded: a set is cleared when full.
_valid_types: set[str] = set()
_valid_sensor_ids: set[str] = set()
_VALID_TAGS_MAX = 100_000


def _remember(pattern: re.Pattern, seen: set[str], value: str) -> bool:
    if pattern.fullmatch(value) is None:
        return False
    if len(seen) >= _VALID_TAGS_MAX:
        seen.clear()
    seen.add(value)
    return True


def _why(checker, value) -> str:
    try:
        checker(value)
    except ValueError as exc:
        return str(exc)
    return "is invalid"


def _json_kind(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")
