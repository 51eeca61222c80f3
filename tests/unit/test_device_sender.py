"""The device agent's sender: backoff bounds, what each api answer means, and the queue bookkeeping.

The answers' meaning (`classify`) is a pure function of status, headers and body, tested here on the
api's documented bodies; the real api's answers are exercised end to end in
tests/integration/test_device_agent.py. The bookkeeping tests drive `Sender` with a scripted client so
that the 422-with-"rejected" case (which the api documents but does not produce today) is covered too.
"""
from __future__ import annotations

import json
import os
import random
import socket
import threading
import time

import pytest
from iot_device.queue import Queue
from iot_device.sender import (
    AUTH,
    PARTIAL,
    REFUSED,
    RETRY,
    STORED,
    TOO_LARGE,
    UNEXPECTED,
    Client,
    Outcome,
    Sender,
    backoff_delay,
    classify,
    parse_retry_after,
)

# -- backoff -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "cap"), [(1.0, 300.0), (0.05, 0.3), (2.0, 2.0), (0.001, 86400.0)])
def test_backoff_stays_within_half_base_and_cap(base, cap):
    rng = random.Random(7)
    for failures in range(0, 2000):
        d = backoff_delay(failures, base, cap, rng.random)
        assert base / 2 - 1e-12 <= d <= cap, (failures, d)


def test_backoff_doubles_until_the_cap():
    top = [backoff_delay(n, 1.0, 300.0, lambda: 1.0) for n in range(1, 12)]
    assert top == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    low = [backoff_delay(n, 1.0, 300.0, lambda: 0.0) for n in range(1, 4)]
    assert low == [0.5, 1.0, 2.0]  # jitter: at least half the nominal delay


def test_backoff_of_a_huge_failure_count_does_not_overflow():
    assert backoff_delay(10**9, 1.0, 300.0, lambda: 1.0) == 300.0


def test_backoff_jitter_spreads_devices():
    rng = random.Random(1)
    delays = {round(backoff_delay(5, 1.0, 300.0, rng.random), 3) for _ in range(50)}
    assert len(delays) > 40 and min(delays) >= 8 and max(delays) <= 16


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after("soon") is None and parse_retry_after("-3") is None
    now = 1_700_000_000.0
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 30))
    assert parse_retry_after(http_date, now=now) == pytest.approx(30.0)
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT", now=now) == 0.0  # in the past


# -- classify: the api's answers ------------------------------------------------------------------------


def body(doc) -> bytes:
    return json.dumps(doc).encode()


def test_201_is_stored():
    assert classify(201, {}, body({"stored": 3}), 3).kind == STORED


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
def test_transient_answers_mean_retry(status):
    out = classify(status, {"Retry-After": "7"}, body({"error": "influxdb is unavailable"}), 10)
    assert out.kind == RETRY and out.retry_after == 7.0 and out.status == status
    assert "influxdb is unavailable" in out.message


def test_retry_after_header_name_is_case_insensitive():
    assert classify(503, {"retry-after": "3"}, b"", 1).retry_after == 3.0
    assert classify(503, {}, b"", 1).retry_after is None


@pytest.mark.parametrize("status", [401, 403])
def test_token_problems_are_auth(status):
    out = classify(status, {}, body({"error": "missing or unknown bearer token"}), 5)
    assert out.kind == AUTH and "bearer token" in out.message


def test_413_is_too_large():
    out = classify(413, {}, body({"error": "batch of 6000 readings exceeds the maximum of 5000"}), 6000)
    assert out.kind == TOO_LARGE


def test_422_with_rejected_names_the_refused_and_implies_the_rest_stored():
    doc = {"error": "1 of 3 readings rejected", "stored": 2,
           "rejected": [{"index": 1, "message": "ts: is before 2000-01-01T00:00:00Z"}]}
    out = classify(422, {}, body(doc), 3)
    assert out.kind == PARTIAL and out.rejected == ((1, "ts: is before 2000-01-01T00:00:00Z"),)


def test_422_with_problems_joins_the_problems_of_one_reading_and_skips_the_body_level():
    doc = {"error": "2 of 4 readings are invalid; nothing was stored", "problems": [
        {"index": 3, "field": "value", "message": "must be a finite number"},
        {"index": 0, "field": "ts", "message": "is in the future"},
        {"index": 3, "field": "type", "message": "must be a string"},
        {"index": None, "field": "", "message": "something about the body"},
    ]}
    out = classify(422, {}, body(doc), 4)
    assert out.kind == REFUSED
    assert out.rejected == ((0, "ts: is in the future"), (3, "value: must be a finite number; type: must be a string"))


def test_refusal_naming_no_reading_is_refused_with_nobody_named():
    out = classify(422, {}, body({"error": "empty batch: send at least one reading"}), 1)
    assert out.kind == REFUSED and out.rejected == ()
    out = classify(400, {}, body({"error": "malformed JSON"}), 2)
    assert out.kind == REFUSED and out.rejected == ()


@pytest.mark.parametrize(("status", "payload"), [
    (422, body({"error": "x", "problems": [{"index": 7, "field": "ts", "message": "bad"}]})),  # out of the batch
    (422, body({"error": "x", "problems": [{"index": "0", "message": "bad"}]})),  # index not an int
    (422, body({"error": "x", "rejected": ["nonsense"]})),
    (400, b"<html>Bad Request</html>"),  # a proxy, not the api
    (404, body({"error": "not found"})),
    (405, b""),
    (302, b""),
    (200, b"<html>captive portal</html>"),
    (202, body({"queued": 3})),
])
def test_anything_else_is_unexpected_and_keeps_the_readings(status, payload):
    out = classify(status, {}, payload, 3)
    assert out.kind == UNEXPECTED and out.message.startswith(f"HTTP {status}")


# -- the HTTP client, against real sockets ----------------------------------------------------------------


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_retry():
    out = Client(f"http://127.0.0.1:{_unused_port()}/data", timeout=2).post([{"ts": "x"}])
    assert out.kind == RETRY and out.status is None and "cannot reach" in out.message


def test_a_server_that_never_answers_is_a_retry_after_the_timeout():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts the connection (kernel backlog) but never answers
    try:
        port = server.getsockname()[1]
        t0 = time.monotonic()
        out = Client(f"http://127.0.0.1:{port}/data", timeout=0.5).post([{"ts": "x"}])
        assert out.kind == RETRY and "timed out" in out.message
        assert 0.4 < time.monotonic() - t0 < 5
    finally:
        server.close()


def test_redirects_are_not_followed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    seen = []

    def answer():
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:  # headers and body may come in separate segments
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            while len(rest) < length:
                rest += conn.recv(65536)
            seen.append(head + b"\r\n\r\n" + rest)
            conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        out = Client(f"http://127.0.0.1:{port}/data", timeout=5, token="tok-0123456789abcdef").post(
            [{"ts": "t", "type": "temp", "value": 1.5, "sensor_id": "pi"}])
    finally:
        thread.join(5)
        server.close()
    assert out.kind == UNEXPECTED and out.status == 302
    request = seen[0].decode()
    assert request.startswith("POST /data HTTP/1.1")
    assert "Authorization: Bearer tok-0123456789abcdef" in request
    assert "Content-Type: application/json" in request
    assert request.endswith('[{"ts":"t","type":"temp","value":1.5,"sensor_id":"pi"}]')


def test_token_file_is_reread_when_it_changes(tmp_path):
    path = tmp_path / "token"
    path.write_text("old-token-0123456789\n")
    client = Client("http://127.0.0.1:1/data", timeout=1, token="old-token-0123456789", token_file=str(path))
    assert client.token() == "old-token-0123456789"
    new = tmp_path / "token.new"
    new.write_text("new-token-0123456789\n")
    os.replace(new, path)
    assert client.token() == "new-token-0123456789"
    path.write_text("")  # a broken edit keeps the last good token
    assert client.token() == "new-token-0123456789"


# -- Sender bookkeeping ---------------------------------------------------------------------------------


class ScriptedClient:
    """Answers each post with the next scripted Outcome (or a function of the batch); records batches."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.batches: list[list[dict]] = []

    def post(self, readings):
        self.batches.append(list(readings))
        answer = self.answers.pop(0)
        return answer(readings) if callable(answer) else answer


def filled(tmp_path, n: int) -> Queue:
    q = Queue(str(tmp_path / "q.sqlite3"))
    for i in range(n):
        q.enqueue({"ts": f"2024-05-01T12:00:{i:02d}.000000Z", "type": "temp", "value": float(i), "sensor_id": "pi"})
    return q


def test_201_acks_the_batch_oldest_first(tmp_path):
    q = filled(tmp_path, 5)
    client = ScriptedClient(Outcome(STORED, 201), Outcome(STORED, 201))
    sender = Sender(q, client, batch=3)
    assert sender.step().sent == 3
    assert [r["value"] for r in client.batches[0]] == [0.0, 1.0, 2.0]
    assert sender.step().sent == 2
    assert q.count() == 0 and not sender.step().progress


def test_partial_422_acks_the_stored_and_dead_letters_the_rejected(tmp_path):
    q = filled(tmp_path, 4)
    sender = Sender(q, ScriptedClient(Outcome(PARTIAL, 422, "x", ((2, "ts: too old"),))), batch=10)
    step = sender.step()
    assert (step.progress, step.sent, step.rejected) == (True, 3, 1)
    assert q.count() == 0
    dead = q.rejected_rows()
    assert [(d["value"], d["status"], d["message"]) for d in dead] == [(2.0, 422, "ts: too old")]


def test_refused_with_problems_dead_letters_the_named_and_resends_the_rest(tmp_path):
    q = filled(tmp_path, 4)
    client = ScriptedClient(Outcome(REFUSED, 422, "x", ((0, "a"), (3, "b"))), Outcome(STORED, 201))
    sender = Sender(q, client, batch=10)
    assert sender.step().rejected == 2
    assert [r.value for r in q.peek(10)] == [1.0, 2.0]  # nothing was stored: still queued
    assert sender.step().sent == 2
    assert [r["value"] for r in client.batches[1]] == [1.0, 2.0]
    assert sorted(d["message"] for d in q.rejected_rows()) == ["a", "b"]


def test_refusal_naming_nobody_is_narrowed_down_by_halving(tmp_path):
    q = filled(tmp_path, 8)
    poison = 5.0

    def api(batch):
        if any(r["value"] == poison for r in batch):
            return Outcome(REFUSED, 400, "HTTP 400: malformed JSON")
        return Outcome(STORED, 201)

    sender = Sender(q, ScriptedClient(*[api] * 20), batch=8)
    for _ in range(20):
        if not sender.step().progress:
            break
    assert q.count() == 0
    assert [d["value"] for d in q.rejected_rows()] == [poison]
    assert q.stats()["sent_total"] == 7


def test_413_halves_the_batch_for_good(tmp_path):
    q = filled(tmp_path, 10)
    limit = 3

    def api(batch):
        return Outcome(TOO_LARGE, 413, "too large") if len(batch) > limit else Outcome(STORED, 201)

    client = ScriptedClient(*[api] * 20)
    sender = Sender(q, client, batch=10)
    while sender.step().progress:
        pass
    assert q.count() == 0 and q.rejected_rows() == []
    assert [len(b) for b in client.batches] == [10, 5, 2, 2, 2, 2, 2]
    assert sender.max_batch == 2


def test_413_for_a_single_reading_keeps_it(tmp_path):
    q = filled(tmp_path, 1)
    step = Sender(q, ScriptedClient(Outcome(TOO_LARGE, 413, "too large")), batch=1).step()
    assert not step.progress and step.outcome.kind == TOO_LARGE and q.count() == 1


@pytest.mark.parametrize("outcome", [Outcome(RETRY, 503, "down", retry_after=2.0), Outcome(RETRY, None, "refused"),
                                     Outcome(AUTH, 401, "bad token"), Outcome(UNEXPECTED, 404, "not found")])
def test_failures_keep_every_reading(tmp_path, outcome):
    q = filled(tmp_path, 3)
    step = Sender(q, ScriptedClient(outcome), batch=10).step()
    assert not step.progress and step.outcome == outcome
    assert q.count() == 3 and q.rejected_rows() == []


def test_non_finite_values_are_dead_lettered_locally(tmp_path):
    q = filled(tmp_path, 2)
    # Cannot come from the sensor; guards against a hand-edited queue. (SQLite keeps inf; NaN becomes NULL.)
    with q._tx() as db:
        db.execute("UPDATE queue SET value = ? WHERE id = (SELECT min(id) FROM queue)", (float("inf"),))
    client = ScriptedClient(Outcome(STORED, 201))
    sender = Sender(q, client, batch=10)
    assert sender.step().rejected == 1
    assert sender.step().sent == 1
    assert q.rejected_rows()[0]["status"] is None and q.count() == 0
