"""Taking one reading: the CPU temperature from the kernel's thermal zone, stamped with the device's clock.

The kernel reports millidegrees Celsius as a decimal integer ("48312\\n" is 48.312 °C). The path is a
setting so that tests (and boards with another zone) can point it at any file.
"""
from __future__ import annotations

import re
import time

_MILLIDEGREES = re.compile(r"-?[0-9]{1,9}\Z")


class SensorError(Exception):
    """The temperature could not be read; the message names the file and what was wrong."""


def read_millidegrees(path: str) -> int:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(64)  # a thermal file is a few bytes; never slurp a wrong, huge file
    except FileNotFoundError:
        raise SensorError(f"temperature file {path} does not exist (check DEVICE_TEMP_PATH)") from None
    except OSError as exc:
        # Some thermal drivers answer EIO/EAGAIN now and then: the caller logs it and tries next time.
        raise SensorError(f"cannot read temperature file {path}: {exc.strerror or exc}") from None
    text = raw.decode("ascii", "replace").strip()
    if not _MILLIDEGREES.match(text):
        shown = text[:32] + ("…" if len(text) > 32 else "")
        raise SensorError(f"temperature file {path} holds {shown!r}, not an integer number of millidegrees")
    return int(text)


def read_celsius(path: str) -> float:
    # Integer millidegrees / 1000 is the nearest double to the true value (48312 -> 48.312).
    return read_millidegrees(path) / 1000


def rfc3339_utc(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 UTC with microseconds: 2024-05-01T12:00:00.123456Z.

    Formatted by hand (not datetime.isoformat) to always have the fraction and the Z, on any Python 3.9+.
    """
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac // 1000:06d}Z"


def take_reading(path: str, sensor_id: str, type_: str) -> dict:
    """One reading in the api's wire format. The timestamp is the device's clock at the moment the
    file was read, so a reading sent hours later (after an outage) still says when it was taken."""
    value = read_celsius(path)
    ts = rfc3339_utc(time.time_ns())
    return {"ts": ts, "type": type_, "value": value, "sensor_id": sensor_id}
