"""RFC 3339 timestamps <-> integer nanoseconds since the epoch.

Hand-written on purpose: `datetime` keeps microseconds only, and a reading's `ts` must be stored at its
full precision (up to 9 fraction digits), or two readings a few hundred ns apart would collide.
"""
from __future__ import annotations

import re

NS_PER_S = 1_000_000_000

# ASCII digits only: `\d` would take Arabic-Indic digits, which int() then converts.
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)
_FRACTION_SCALE = [10 ** (9 - n) for n in range(10)]  # "123" (ms) -> 123 * 10**6 ns
# InfluxDB stores int64 nanoseconds and reserves the two extremes.
MIN_NS = -9_223_372_036_854_775_806
MAX_NS = 9_223_372_036_854_775_806
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DURATION = re.compile(r"(\d{1,9})(ns|us|ms|s|m|h|d|w)\Z", re.ASCII)
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": NS_PER_S, "m": 60 * NS_PER_S,
            "h": 3600 * NS_PER_S, "d": 86400 * NS_PER_S, "w": 7 * 86400 * NS_PER_S}


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_day_cache: dict[str, int] = {}  # "YYYY-MM-DD" -> days since the epoch; readings share few dates


def _days(date: str) -> int:
    days = _day_cache.get(date)
    if days is None:
        year, month, day = int(date[:4]), int(date[5:7]), int(date[8:10])
        if not 1 <= month <= 12:
            raise ValueError(f"month {month:02d} does not exist")
        dim = 29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month - 1]
        if not 1 <= day <= dim:
            raise ValueError(f"day {day:02d} does not exist in {year:04d}-{month:02d}")
        days = days_from_civil(year, month, day)
        if len(_day_cache) < 100_000:
            _day_cache[date] = days
    return days


_minute_cache: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM" (UTC) -> seconds since the epoch


def parse_rfc3339(text: str, _minutes=_minute_cache, _ns=NS_PER_S, _scale=_FRACTION_SCALE) -> int:
    """Nanoseconds since the epoch; ValueError with a reason a client can act on.

    Runs once per stored reading (a third of the api's CPU for batches). Readings of a batch share
    their minute, so the common UTC forms (`...T12:34:56Z`, `...T12:34:56.fraction Z`) are parsed from
    a cache of validated minute prefixes; anything else, or a first sight of a minute, takes the full
    regex parse."""
    n = len(text)
    if n >= 20 and text[-1] == "Z" and text[16] == ":":
        base = _minutes.get(text[:16])
        if base is not None:
            sec = text[17:19]
            if n == 20:
                if sec.isdigit() and sec.isascii() and sec < "60":
                    return (base + int(sec)) * _ns
            elif text[19] == "." and 22 <= n <= 30:
                frac = text[20:-1]
                digits = sec + frac
                if digits.isdigit() and digits.isascii() and sec < "60":
                    return (base + int(sec)) * _ns + int(frac) * _scale[n - 21]
    return _parse_full(text)


_SECOND = {f":{s:02d}": s for s in range(60)}  # ":SS" of a time of day -> its second
_PAD = ["0" * (9 - n) for n in range(10)]  # a fraction of n digits, completed to nanoseconds


def ns_text(text: str, lo_s: int, hi_s: int, _minutes=_minute_cache, _second=_SECOND, _pad=_PAD) -> str | None:
    """The decimal nanoseconds of a UTC timestamp of an already seen minute, as text, when its
    second lies within [lo_s, hi_s] (lo_s > 0); None for anything else (then parse_rfc3339 decides).

    The api's hot path (a batch of 1,000 readings): built by joining the second and the fraction's
    digits, without int() of the fraction or int-to-text of a 19-digit number, half the CPU of
    parse_rfc3339 (measured)."""
    n = len(text)
    if n < 20 or text[-1] != "Z":
        return None
    base = _minutes.get(text[:16])
    if base is None:
        return None
    second = _second.get(text[16:19])
    if second is None:
        return None
    secs = base + second
    if secs < lo_s or secs > hi_s:
        return None
    if n == 20:
        return f"{secs}000000000"
    frac = text[20:-1]
    if text[19] != "." or n > 30 or not frac.isdigit() or not frac.isascii():
        return None
    return f"{secs}{frac}{_pad[n - 21]}"


def _parse_full(text: str) -> int:
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError("must be an RFC 3339 timestamp like 2017-06-25T09:53:16Z")
    date, hh, mm, ss, frac, sign, oh, om = m.groups()
    hour, minute, second = int(hh), int(mm), int(ss)
    if hour > 23 or minute > 59 or second > 59:  # leap seconds (:60) are not representable in InfluxDB
        raise ValueError("time of day out of range")
    minute_start = _days(date) * 86400 + hour * 3600 + minute * 60
    if not sign and len(_minute_cache) < 100_000:
        _minute_cache[text[:16]] = minute_start
    secs = minute_start + second
    if sign:
        hours, mins = int(oh), int(om)
        if hours > 23 or mins > 59:
            raise ValueError("UTC offset out of range")
        secs += (hours * 3600 + mins * 60) * (-1 if sign == "+" else 1)
    if frac:
        return secs * NS_PER_S + int(frac) * _FRACTION_SCALE[len(frac)]
    return secs * NS_PER_S


def format_rfc3339(ns: int) -> str:
    """UTC, with the fraction trimmed of trailing zeros (as InfluxDB prints it)."""
    secs, frac = divmod(ns, NS_PER_S)
    days, rem = divmod(secs, 86400)
    # civil_from_days (inverse of days_from_civil)
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    y += m <= 2
    text = f"{y:04d}-{m:02d}-{d:02d}T{rem // 3600:02d}:{rem % 3600 // 60:02d}:{rem % 60:02d}"
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def parse_duration(text: str) -> int | None:
    """'30d', '1h', '500ms'… to nanoseconds; 'INF' (any case) to None, meaning forever."""
    if text.strip().upper() == "INF":
        return None
    m = _DURATION.match(text.strip())
    if m is None:
        raise ValueError("must be a duration like 30s, 10m, 1h, 30d, 2w (or INF)")
    return int(m.group(1)) * _UNIT_NS[m.group(2)]
