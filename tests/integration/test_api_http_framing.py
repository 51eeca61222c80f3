"""The api's protocol (api/iot_api/protocol.py) joins a response's head and body into one send: on a
real api process, responses must stay intact and in order in every way HTTP/1.1 frames them."""
from __future__ import annotations

import json
import socket

from test_api_slow_client import connect, parse_response, post_request, read_until_closed

READING = {"type": "temp", "value": 21.5, "sensor_id": "protocol"}


def read_responses(sock: socket.socket, n: int) -> list[tuple[int, dict, bytes]]:
    """N responses framed by Content-Length from one keep-alive connection."""
    sock.settimeout(15)
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} of {n} responses"
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status, headers, _ = parse_response(head + b"\r\n\r\n")
        length = int(headers["content-length"])
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed inside a body"
            rest += chunk
        out.append((status, headers, rest[:length]))
        buf = rest[length:]
    assert buf == b"", f"bytes beyond the last response: {buf[:80]!r}"
    return out


def test_pipelined_requests_get_their_responses_in_order(api, influxdb):
    bodies = [json.dumps({**READING, "ts": f"2026-01-01T00:00:0{i}Z"}).encode() for i in range(5)]
    bad = b'{"type":"temp","value":"x","sensor_id":"protocol"}'
    wire = b"".join(post_request(api, b) for b in bodies[:3]) + post_request(api, bad) + \
        b"".join(post_request(api, b) for b in bodies[3:]) + \
        f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n\r\n".encode()
    with connect(api) as sock:
        sock.sendall(wire)  # seven requests in one segment
        answers = read_responses(sock, 7)
    assert [s for s, _, _ in answers] == [201, 201, 201, 422, 201, 201, 200]
    assert json.loads(answers[0][2]) == {"stored": 1}
    assert "value" in answers[3][2].decode()
    assert json.loads(answers[6][2]) == {"status": "alive"}
    assert influxdb.count(api.db) == 5


def test_a_large_response_arrives_whole(api):
    with connect(api) as sock:
        sock.sendall(f"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n\r\n".encode())
        [(status, headers, body)] = read_responses(sock, 1)
    assert status == 200
    assert len(body) == int(headers["content-length"]) > 4096
    assert "/data" in json.loads(body)["paths"]


def test_connection_close_gets_the_whole_response_then_the_end(api):
    with connect(api) as sock:
        sock.sendall(post_request(api, json.dumps(READING).encode(), keep_alive=False))
        raw, _ = read_until_closed(sock)
    status, headers, body = parse_response(raw)
    assert (status, json.loads(body)) == (201, {"stored": 1})
    assert headers["connection"] == "close"
