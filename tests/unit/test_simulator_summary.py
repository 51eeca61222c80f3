"""Simulator summary and exit status: 0 only when every generated reading is known stored."""
from __future__ import annotations

import logging

import pytest
from iot_simulator.stats import RateLimitedLog, Stats, Summary


def summary(generated, stored, rejected=0, interrupted=False):
    s = Stats(started=0.0)
    s.generated, s.stored, s.rejected = generated, stored, rejected
    s.sent = s.requests = stored + rejected
    return Summary.from_stats(s, devices=2, interrupted=interrupted, now=4.0)


@pytest.mark.parametrize(("generated", "stored", "rejected", "code"), [
    (0, 0, 0, 0),  # stopped before the first reading: nothing to lose
    (500, 500, 0, 0),
    (500, 499, 0, 1),  # one pending (e.g. in flight at the drain deadline)
    (500, 498, 2, 1),  # two rejected by the api
    (500, 0, 500, 1),
])
def test_exit_code(generated, stored, rejected, code):
    s = summary(generated, stored, rejected)
    assert s.exit_code == code
    assert s.pending == generated - stored - rejected
    assert s.as_dict()["exit_code"] == code


def test_summary_fields_and_text():
    s = summary(500, 480, 5, interrupted=True)
    d = s.as_dict()
    for key in ("generated", "stored", "rejected", "pending", "retries", "requests", "elapsed", "rate"):
        assert key in d
    assert d["pending"] == 15 and d["elapsed"] == 4.0 and d["rate"] == 120.0
    text = s.text()
    assert "generated 500, stored 480, rejected 5, pending 15" in text
    assert "NOT ALL STORED" in text and "interrupted" in text
    assert "all generated readings stored" in summary(3, 3).text()


def test_progress_line_has_sent_stored_retried_pending_rate():
    s = Stats(started=0.0)
    s.generated, s.sent, s.stored, s.retried = 120, 110, 100, 10
    line = s.progress_line(now=2.0)
    for part in ("sent 110", "stored 100", "retried 10", "pending 20", "rate 50.0/s"):
        assert part in line
    s.stored = 130
    s.generated = 130
    assert "rate 15.0/s" in s.progress_line(now=4.0)  # rate over the last period, not the whole run


def test_rate_limited_log_says_how_many_were_held_back(caplog):
    now = [0.0]
    warn = RateLimitedLog(every=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="iot_simulator"):
        assert warn(logging.WARNING, "k", "api down")
        for _ in range(99):
            assert not warn(logging.WARNING, "k", "api down")
        assert warn(logging.WARNING, "other", "buffer full")  # another key is not held back
        now[0] = 10.5
        assert warn(logging.WARNING, "k", "api down")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["api down", "buffer full", "api down (and 99 more like it)"]
