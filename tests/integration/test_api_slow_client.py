"""Slow clients against a real api process: none may hold a connection (one of API_MAX_CONNECTIONS)
for longer than its deadline, and while they try, other clients are served.

- API_BODY_TIMEOUT: a body trickled one byte a second gets 408 (JSON) and the connection is closed;
- API_HEADER_TIMEOUT: headers trickled one byte a second, or a connection that sends nothing, are
  closed (408 when part of a request arrived);
- API_KEEPALIVE_TIMEOUT: an idle keep-alive connection is closed after it, not before;
- API_MAX_CONNECTIONS: above it, 503 with a JSON body and Retry-After (uvicorn's own 503 has neither).
Bad values of the new settings stop the api at start with one line naming the variable.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from harness import ROOT

READING = {"type": "temp", "value": 21.5, "sensor_id": "slow"}
SHORT = {"API_BODY_TIMEOUT": "2s", "API_HEADER_TIMEOUT": "2s", "API_KEEPALIVE_TIMEOUT": "1s"}


def connect(api) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=15)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket, limit: float = 15) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when (monotonic)."""
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic()


def parse_response(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def trickle(sock: socket.socket, data: bytes, stop: threading.Event, every: float = 1.0) -> None:
    """Send DATA one byte per EVERY seconds until done, STOP is set or the server closes."""
    for i in range(len(data)):
        if stop.is_set():
            return
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return
        stop.wait(every)


def post_request(api, body: bytes, keep_alive: bool = True) -> bytes:
    return (f"POST /data HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + ("" if keep_alive else "Connection: close\r\n") + "\r\n").encode() + body


def test_a_trickled_body_gets_408_within_the_deadline_and_others_are_served(start_api, influxdb):
    api = start_api(env=SHORT)
    body = json.dumps([READING] * 20).encode()  # ~1 KB: 17 minutes at one byte a second
    stop = threading.Event()
    slow = [connect(api) for _ in range(3)]
    try:
        started = time.monotonic()
        threads = []
        for sock in slow:
            sock.sendall(post_request(api, body)[:-len(body)])  # the headers, at once
            t = threading.Thread(target=trickle, args=(sock, body, stop), daemon=True)
            t.start()
            threads.append(t)
        # Meanwhile, on other connections: served at once.
        time.sleep(0.5)
        for _ in range(3):
            t0 = time.monotonic()
            status, _, answer = api.post("/data", READING)
            assert (status, answer) == (201, {"stored": 1})
            assert time.monotonic() - t0 < 1.5
        for sock in slow:
            raw, closed_at = read_until_closed(sock)
            status, headers, payload = parse_response(raw)
            assert status == 408, raw
            assert headers["content-type"] == "application/json"
            assert headers.get("connection") == "close"
            assert "API_BODY_TIMEOUT" in json.loads(payload)["error"]
            assert 1.8 <= closed_at - started <= 5.0, closed_at - started  # the 2 s deadline, not later
    finally:
        stop.set()
        for sock in slow:
            sock.close()
    assert influxdb.count(api.db) == 3  # the slow bodies stored nothing
    assert api.get("/healthz")[0] == 200


def test_trickled_headers_and_silent_connections_are_closed(start_api):
    api = start_api(env=SHORT)
    stop = threading.Event()
    trickled, silent = connect(api), connect(api)
    try:
        started = time.monotonic()
        request = post_request(api, json.dumps(READING).encode())
        threading.Thread(target=trickle, args=(trickled, request, stop), daemon=True).start()
        raw, closed_at = read_until_closed(trickled)
        assert 1.8 <= closed_at - started <= 5.0, closed_at - started
        status, headers, payload = parse_response(raw)
        assert status == 408 and headers.get("connection") == "close", raw
        assert "API_HEADER_TIMEOUT" in json.loads(payload)["error"]

        raw, closed_at = read_until_closed(silent)  # connected, never sent a byte: closed, no answer
        assert raw == b""
        assert closed_at - started <= 5.0
        assert api.post("/data", READING)[0] == 201
    finally:
        stop.set()
        trickled.close()
        silent.close()


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(start_api):
    api = start_api(env={**SHORT, "API_KEEPALIVE_TIMEOUT": "2s", "API_HEADER_TIMEOUT": "10s"})
    sock = connect(api)
    try:
        body = json.dumps(READING).encode()
        sock.sendall(post_request(api, body))
        sock.settimeout(10)
        first = b""
        while b"\r\n\r\n" not in first or not first.endswith(b"}"):
            first += sock.recv(65536)
        answered = time.monotonic()
        assert parse_response(first)[0] == 201
        # Still open well inside the timeout: a second request on the same connection is served.
        time.sleep(1.0)
        sock.sendall(post_request(api, body))
        second = b""
        while b"\r\n\r\n" not in second or not second.endswith(b"}"):
            second += sock.recv(65536)
        assert parse_response(second)[0] == 201
        answered = time.monotonic()
        raw, closed_at = read_until_closed(sock)
        assert raw == b""
        assert 1.7 <= closed_at - answered <= 4.5, closed_at - answered
    finally:
        sock.close()


def test_above_max_connections_503_with_json_and_retry_after(start_api):
    api = start_api(env={"API_MAX_CONNECTIONS": "3", "API_HEADER_TIMEOUT": "30s", "API_RETRY_AFTER": "7"})
    idle = [connect(api) for _ in range(3)]
    try:
        time.sleep(0.3)
        status, headers, body = api.post("/data", READING)
        assert status == 503, body
        assert {k.lower(): v for k, v in headers.items()}.get("retry-after") == "7"
        assert "API_MAX_CONNECTIONS" in body["error"] and body["retry_after"] == 7
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    assert api.post("/data", READING)[0] == 201  # slots free again


@pytest.mark.parametrize("name, value", [("API_BODY_TIMEOUT", "soon"), ("API_HEADER_TIMEOUT", "INF"),
                                         ("API_KEEPALIVE_TIMEOUT", "1ms")])
def test_bad_timeouts_stop_the_api_naming_the_variable(name, value):
    env = {**os.environ, name: value, "PYTHONPATH": str(ROOT / "api")}
    proc = subprocess.run([sys.executable, "-m", "iot_api"], env=env, capture_output=True, text=True, timeout=30,
                          cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"iot-api: configuration error: {name}=")
    assert "Traceback" not in proc.stderr
