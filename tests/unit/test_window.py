"""The district processor's window (api/iot_stream/window.py): event time, each sensor's latest value,
the watermark, late and out-of-order readings, and what is published or cleared."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iot_stream.window import ACCEPTED, LATE, STALE, Aggregate, Windows, changes

S = 1_000_000_000
T0 = 1_800_000_000 * S  # an arbitrary event time; the window has no clock of its own


def test_each_sensor_counts_once_with_its_latest_value():
    w = Windows(300 * S)
    assert w.add("q01", "a", "temp", T0, 10.0) == ACCEPTED
    assert w.add("q01", "a", "temp", T0 + 5 * S, 12.0) == ACCEPTED  # replaces 10.0
    assert w.add("q01", "b", "temp", T0 + 1 * S, 20.0) == ACCEPTED
    agg = w.aggregates()[("q01", "temp")]
    assert (agg.mean, agg.min, agg.max, agg.n, agg.ts_ns) == (16.0, 12.0, 20.0, 2, T0 + 5 * S)
    assert agg.payload() == {"district": "q01", "type": "temp", "mean": 16.0, "min": 12.0, "max": 20.0, "n": 2,
                             "window_s": 300, "ts": "2027-01-15T08:00:05Z"}


def test_districts_and_types_are_apart():
    w = Windows(300 * S)
    w.add("q01", "a", "temp", T0, 10.0)
    w.add("q02", "b", "temp", T0, 30.0)
    w.add("q01", "a", "humidity", T0, 55.0)
    aggs = w.aggregates()
    assert {k: (a.mean, a.n) for k, a in aggs.items()} == {
        ("q01", "temp"): (10.0, 1), ("q02", "temp"): (30.0, 1), ("q01", "humidity"): (55.0, 1)}


def test_an_older_reading_of_a_sensor_is_stale_and_does_not_replace():
    w = Windows(300 * S)
    w.add("q01", "a", "temp", T0 + 10 * S, 12.0)
    assert w.add("q01", "a", "temp", T0 + 5 * S, 99.0) == STALE
    assert w.aggregates()[("q01", "temp")].mean == 12.0


def test_the_same_time_again_overwrites_as_storage_does():
    w = Windows(300 * S)
    w.add("q01", "a", "temp", T0, 12.0)
    assert w.add("q01", "a", "temp", T0, 13.0) == ACCEPTED
    assert w.aggregates()[("q01", "temp")].mean == 13.0


def test_values_leave_the_window_as_the_watermark_moves_on():
    w = Windows(300 * S)
    w.add("q01", "a", "temp", T0, 10.0)
    w.add("q02", "b", "temp", T0 + 300 * S, 20.0)  # the window is (T0, T0 + 300 s]: a's T0 is out
    assert set(w.aggregates()) == {("q02", "temp")}
    assert len(w) == 1


def test_the_window_edge_is_exclusive_at_its_start():
    w = Windows(300 * S)
    w.add("q01", "a", "temp", T0 + 1, 10.0)
    w.add("q02", "b", "temp", T0 + 300 * S, 20.0)
    assert set(w.aggregates()) == {("q01", "temp"), ("q02", "temp")}


def test_a_reading_older_than_the_window_is_late():
    w = Windows(300 * S)
    w.add("q01", "a", "temp", T0 + 600 * S, 10.0)
    assert w.add("q01", "b", "temp", T0 + 300 * S, 10.0) == LATE
    assert w.add("q01", "b", "temp", T0 + 301 * S, 11.0) == ACCEPTED  # out of order, but in the window
    assert w.aggregates()[("q01", "temp")].n == 2


def test_a_clock_ahead_cannot_push_the_watermark_past_now():
    """One device whose clock is 30 minutes ahead would otherwise empty every district."""
    w = Windows(300 * S)
    now = T0 + 10 * S
    w.add("q01", "a", "temp", T0, 10.0, now_ns=now)
    assert w.add("q02", "fast", "temp", T0 + 1800 * S, 30.0, now_ns=now) == ACCEPTED
    assert w.watermark_ns == now
    assert set(w.aggregates()) == {("q01", "temp"), ("q02", "temp")}


def test_a_sensor_that_moves_district_leaves_the_old_one():
    w = Windows(300 * S)
    w.add("q01", "a", "temp", T0, 10.0)
    w.add("q02", "a", "temp", T0 + S, 11.0)
    assert {k: a.n for k, a in w.aggregates().items()} == {("q02", "temp"): 1}


def test_fractional_window_is_kept_as_given():
    w = Windows(int(2.5 * S))
    w.add("q01", "a", "temp", T0, 1.0)
    assert w.aggregates()[("q01", "temp")].window_s == 2.5


def test_changes_sends_what_differs_and_clears_what_emptied():
    a = Aggregate("q01", "temp", 1.0, 1.0, 1.0, 1, 300, T0)
    b = Aggregate("q02", "temp", 2.0, 2.0, 2.0, 1, 300, T0)
    b2 = Aggregate("q02", "temp", 3.0, 3.0, 3.0, 1, 300, T0 + S)
    assert changes({}, {("q01", "temp"): a}) == ([a], [])
    assert changes({("q01", "temp"): a}, {("q01", "temp"): a}) == ([], [])
    assert changes({("q01", "temp"): a, ("q02", "temp"): b}, {("q02", "temp"): b2}) == ([b2], [("q01", "temp")])


def test_a_window_must_be_positive():
    with pytest.raises(ValueError):
        Windows(0)


# -- properties ------------------------------------------------------------------------------------
readings = st.lists(
    st.tuples(st.sampled_from(["q01", "q02", "blagnac"]), st.sampled_from(["s1", "s2", "s3", "s4"]),
              st.sampled_from(["temp", "humidity"]), st.integers(0, 1000),
              st.floats(-50, 1100, allow_nan=False, allow_infinity=False)),
    max_size=60)


def _unique_times(items):
    """One reading per (sensor, type, time): with two at the same time the later message wins, which
    depends on order by design (a correction)."""
    seen, out = set(), []
    for r in items:
        if (r[1], r[2], r[3]) not in seen:
            seen.add((r[1], r[2], r[3]))
            out.append(r)
    return out


def _model(items, window_s):
    """The definition, computed naively: the newest event time; per sensor and type its newest
    reading; those inside (newest - window, newest]; grouped by that reading's district."""
    if not items:
        return {}
    newest = max(r[3] for r in items)
    latest = {}
    for r in items:
        if (r[1], r[2]) not in latest or r[3] > latest[(r[1], r[2])][3]:
            latest[(r[1], r[2])] = r
    groups = {}
    for d, _, kind, ts, v in latest.values():
        if ts > newest - window_s:
            groups.setdefault((d, kind), []).append((ts, v))
    return {k: (min(v for _, v in g), max(v for _, v in g), len(g), max(t for t, _ in g),
                sum(v for _, v in g) / len(g)) for k, g in groups.items()}


@settings(max_examples=300, deadline=None)
@given(readings, st.integers(1, 400), st.randoms(use_true_random=False))
def test_aggregates_match_the_definition_in_any_arrival_order(items, window_s, rnd: random.Random):
    items = _unique_times(items)
    rnd.shuffle(items)
    w = Windows(window_s * S)
    for d, sensor, kind, ts, v in items:
        w.add(d, sensor, kind, ts * S, v)
    got = w.aggregates()
    want = _model(items, window_s)
    assert set(got) == set(want)
    for key, (lo, hi, n, ts, mean) in want.items():
        agg = got[key]
        assert (agg.min, agg.max, agg.n, agg.ts_ns) == (lo, hi, n, ts * S)
        assert math.isclose(agg.mean, mean, rel_tol=1e-9, abs_tol=1e-9)
        assert lo <= agg.mean <= hi


@settings(max_examples=200, deadline=None)
@given(readings, st.integers(1, 400))
def test_the_same_readings_in_another_order_give_the_same_aggregates(items, window_s):
    """What lets the warm-up and the live stream merge in whatever order they arrive."""
    items = _unique_times(items)
    forward, backward = Windows(window_s * S), Windows(window_s * S)
    for r in items:
        forward.add(r[0], r[1], r[2], r[3] * S, r[4])
    for r in reversed(items):
        backward.add(r[0], r[1], r[2], r[3] * S, r[4])
    assert forward.aggregates() == backward.aggregates()
