"""Simulator HTTP semantics: what each api answer means, Retry-After, and backoff/jitter bounds."""
from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import orjson
import pytest
from iot_simulator.sender import REJECTED, RETRY, STORED, backoff_delay, classify, parse_retry_after


def body(doc) -> bytes:
    return orjson.dumps(doc)


def test_201_means_all_stored():
    o = classify(201, {}, body({"stored": 5}), 5)
    assert (o.kind, o.stored, o.rejected) == (STORED, 5, 0)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_retryable_statuses_store_nothing_and_read_retry_after(status):
    o = classify(status, {"Retry-After": "3"}, body({"error": "influxdb unreachable"}), 4)
    assert (o.kind, o.stored, o.rejected) == (RETRY, 0, 0)
    assert o.retry_after == 3.0 and o.reason == str(status) and "influxdb unreachable" in o.message


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415, 422])
def test_other_4xx_reject_the_whole_request_with_the_servers_message(status):
    doc = {"error": "bad things", "problems": [{"index": 2, "field": "value", "message": "must be a number"}]}
    o = classify(status, {}, body(doc), 3)
    assert (o.kind, o.stored, o.rejected) == (REJECTED, 0, 3)
    assert "bad things" in o.message and "index 2 value: must be a number" in o.message


def test_422_partial_batch_counts_stored_and_rejected():
    doc = {"error": "2 of 5 rejected", "stored": 3,
           "rejected": [{"index": 1, "message": "too old"}, {"index": 4, "message": "too old"}]}
    o = classify(422, {}, body(doc), 5)
    assert (o.kind, o.stored, o.rejected) == (REJECTED, 3, 2)
    assert "index 1: too old (+1 more)" in o.message


def test_422_with_nonsense_stored_count_rejects_all():
    for stored in (9, -1, "3", True):
        o = classify(422, {}, body({"error": "x", "stored": stored}), 5)
        assert (o.stored, o.rejected) == (0, 5)


def test_non_json_error_bodies_and_unexpected_statuses():
    o = classify(502, {}, b"<html>Bad Gateway</html>", 1)
    assert o.kind == RETRY and "Bad Gateway" in o.message and o.retry_after is None
    for status in (200, 202, 204, 301, 302):  # not the api's contract: never assume "stored"
        o = classify(status, {}, b"", 2)
        assert (o.kind, o.stored, o.rejected) == (REJECTED, 0, 2) and "unexpected" in o.message


def test_parse_retry_after():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after("soon") is None and parse_retry_after("nan") is None
    now = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2026, 11, 22, 10, 0, 7, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(7.0)


def test_backoff_grows_exponentially_within_jitter_bounds_and_cap():
    rng = random.Random(0)
    base, cap = 0.5, 15.0
    for attempt in range(12):
        d = min(cap, base * 2 ** attempt)
        samples = [backoff_delay(attempt, base, cap, rng) for _ in range(500)]
        assert all(d / 2 <= s <= d for s in samples), attempt
        assert max(samples) - min(samples) > d * 0.3  # really jittered, not a constant
    assert backoff_delay(10_000, base, cap, rng) <= cap  # no overflow on a long outage


def test_backoff_honours_retry_after_as_a_floor_with_jitter_but_within_the_cap():
    rng = random.Random(1)
    samples = [backoff_delay(0, 0.5, 15.0, rng, retry_after=2.0) for _ in range(500)]
    assert all(2.0 <= s <= 2.4 for s in samples)
    assert len({round(s, 3) for s in samples}) > 100  # spread: a herd does not come back at once
    assert all(backoff_delay(0, 0.5, 15.0, rng, retry_after=3600) == 15.0 for _ in range(10))
    # a Retry-After shorter than the backoff does not shorten it
    assert all(backoff_delay(4, 0.5, 15.0, rng, retry_after=1) >= 4 for _ in range(100))  # d = 8: [4, 8]
