"""Simulator values: bounded random walk, reproducible with a seed; the course's uniform draw; --types."""
from __future__ import annotations

import random

import pytest
from iot_simulator.values import KNOWN_TYPES, RandomWalk, Uniform, device_rng, parse_types


def _series(seed, sensor="sim-0001", type_name="temp", n=500, uniform=False):
    spec = KNOWN_TYPES[type_name]
    cls = Uniform if uniform else RandomWalk
    gen = cls(spec, device_rng(seed, sensor, type_name))
    return [gen.next() for _ in range(n)]


@pytest.mark.parametrize("type_name", list(KNOWN_TYPES))
def test_random_walk_stays_within_the_range_of_its_type(type_name):
    spec = KNOWN_TYPES[type_name]
    values = _series(7, type_name=type_name, n=20_000)
    assert all(spec.low <= v <= spec.high for v in values)
    # it walks: it actually visits a good part of the range, and consecutive values are close
    assert max(values) - min(values) > 0.3 * (spec.high - spec.low)
    steps = [abs(b - a) for a, b in zip(values, values[1:], strict=False)]
    assert sum(steps) / len(steps) < 0.05 * (spec.high - spec.low)


def test_reflection_keeps_a_huge_step_inside_the_range():
    spec = KNOWN_TYPES["temp"]
    walk = RandomWalk(spec, random.Random(1))
    walk.sigma = 1000.0  # steps far larger than the range
    assert all(spec.low <= walk.next() <= spec.high for _ in range(2000))


def test_same_seed_same_values_and_different_seeds_or_devices_differ():
    assert _series(42) == _series(42)
    assert _series(42) != _series(43)
    assert _series(42, sensor="sim-0001") != _series(42, sensor="sim-0002")
    assert _series(42, type_name="temp") != _series(42, type_name="humidity")


def test_without_seed_runs_differ():
    assert _series(None) != _series(None)


def test_uniform_is_the_courses_integer_temperature_20_to_34():
    values = _series(3, uniform=True, n=5000)
    assert all(isinstance(v, int) for v in values)
    assert set(values) == set(range(20, 35))  # every value of RANDOM % 15 + 20, nothing else
    assert _series(3, uniform=True) == _series(3, uniform=True)


def test_walk_values_have_two_decimals():
    assert all(round(v, 2) == v for v in _series(5, n=200))


def test_parse_types_known_custom_and_errors():
    specs = parse_types("temp,pressure, humidity,light:0:1000")
    assert [s.name for s in specs] == ["temp", "pressure", "humidity", "light"]
    assert (specs[3].low, specs[3].high) == (0, 1000)
    for bad, needle in [("foo", "unknown type"), ("temp,temp", "twice"), ("temp,", "empty"),
                        ("x:1", "NAME:MIN:MAX"), ("x:5:1", "MIN < MAX"), ("x:a:b", "NAME:MIN:MAX"),
                        ("1abc:0:1", "start with a letter"), ("t" * 33 + ":0:1", "at most 32"),
                        ("x:0:inf", "finite")]:
        with pytest.raises(ValueError, match=needle):
            parse_types(bad)
