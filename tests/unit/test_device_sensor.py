"""The device agent's sensor: millidegree files (written by the tests, as the kernel would) and timestamps."""
from __future__ import annotations

import calendar
import re
import time

import pytest
from iot_device.sensor import SensorError, read_celsius, read_millidegrees, rfc3339_utc, take_reading


@pytest.mark.parametrize(("text", "millideg"), [
    ("48312\n", 48312),      # what a Raspberry Pi's thermal_zone0 says
    ("48312", 48312),
    ("  51000 \n", 51000),
    ("0\n", 0),
    ("-5250\n", -5250),       # below zero (some boards, outdoors)
    ("105000\n", 105000),
])
def test_millidegrees_parsed_and_celsius_is_millidegrees_over_1000(tmp_path, text, millideg):
    path = tmp_path / "temp"
    path.write_text(text)
    assert read_millidegrees(str(path)) == millideg
    assert read_celsius(str(path)) == millideg / 1000


def test_celsius_of_a_typical_value_is_exact_to_the_millidegree(tmp_path):
    path = tmp_path / "temp"
    path.write_text("48312\n")
    assert read_celsius(str(path)) == 48.312
    assert repr(read_celsius(str(path))) == "48.312"  # what goes into the JSON


def test_missing_file_is_a_clear_error_naming_the_path_and_setting(tmp_path):
    path = tmp_path / "no-such-zone" / "temp"
    with pytest.raises(SensorError) as err:
        read_celsius(str(path))
    assert str(path) in str(err.value)
    assert "does not exist" in str(err.value)
    assert "DEVICE_TEMP_PATH" in str(err.value)


@pytest.mark.parametrize("garbage", ["", "\n", "abc\n", "48.312\n", "48312 1\n", "0x10\n", "1e3\n",
                                     "9999999999\n", "\xff\xfe\n"])
def test_garbage_is_a_clear_error_showing_what_was_there(tmp_path, garbage):
    path = tmp_path / "temp"
    path.write_bytes(garbage.encode("latin-1"))
    with pytest.raises(SensorError) as err:
        read_millidegrees(str(path))
    assert str(path) in str(err.value)
    assert "not an integer number of millidegrees" in str(err.value)


def test_unreadable_path_is_a_sensor_error_not_a_crash(tmp_path):
    with pytest.raises(SensorError) as err:
        read_millidegrees(str(tmp_path))  # a directory
    assert "cannot read temperature file" in str(err.value)


def test_huge_file_is_not_slurped(tmp_path):
    path = tmp_path / "temp"
    path.write_text("1" * 10_000_000)
    with pytest.raises(SensorError) as err:
        read_millidegrees(str(path))
    assert len(str(err.value)) < 200


def test_rfc3339_utc_has_microseconds_and_z():
    ns = 1498384396_123456789  # 2017-06-25T09:53:16.123456789Z
    assert rfc3339_utc(ns) == "2017-06-25T09:53:16.123456Z"
    assert rfc3339_utc(1498384396_000000000) == "2017-06-25T09:53:16.000000Z"
    assert rfc3339_utc(0) == "1970-01-01T00:00:00.000000Z"


def test_take_reading_is_the_wire_format_stamped_with_the_device_clock(tmp_path):
    path = tmp_path / "temp"
    path.write_text("47250\n")
    before = time.time()
    reading = take_reading(str(path), "pi-kitchen", "temp")
    after = time.time()
    assert set(reading) == {"ts", "type", "value", "sensor_id"}
    assert reading["value"] == 47.25 and reading["type"] == "temp" and reading["sensor_id"] == "pi-kitchen"
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})Z", reading["ts"])
    assert m, reading["ts"]
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    stamp = secs + int(m.group(2)) / 1e6
    assert before - 1e-6 <= stamp <= after + 1e-6


def test_consecutive_readings_have_distinct_increasing_timestamps(tmp_path):
    path = tmp_path / "temp"
    path.write_text("40000\n")
    stamps = []
    for _ in range(3):
        stamps.append(take_reading(str(path), "pi", "temp")["ts"])
        time.sleep(0.002)
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
