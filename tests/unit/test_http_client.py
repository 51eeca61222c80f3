"""ops/http_client.py and its callers against a real HTTP server on loopback: 4xx/5xx are answers, no
answer is one short line (not requests' pool-and-retries text), and `./iot show --influxdb-url` keeps its
one-line errors for a refusal, a server error and an answer that is not JSON."""
from __future__ import annotations

import base64
import gzip
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from ops import http_client, servers
from ops.show import query


class Influxish(BaseHTTPRequestHandler):
    """Answers by path: /401, /500, /html; anything else 200 JSON. Keeps the last Authorization."""
    seen_auth: list[str | None] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen_auth.append(self.headers.get("Authorization"))
        code, body = {"/401/query": (401, b'{"error":"authorization failed"}'), "/500/query": (500, b'{"error":"boom"}'),
                      "/html/query": (200, b"<html>not influx</html>")}.get(
            self.path, (200, b'{"results":[{"statement_id":0,"series":[]}]}'))
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        body = gzip.compress(b"x" * 1000) if "gzip" in self.headers.get("Accept-Encoding", "") else b"x" * 1000
        self.send_response(200)
        if body[:2] == b"\x1f\x8b":
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Influxish)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_connection_is_one_short_line_and_an_oserror():
    with pytest.raises(OSError) as caught:
        http_client.request("GET", f"http://127.0.0.1:{closed_port()}/", timeout=2)
    assert isinstance(caught.value, requests.ConnectionError)
    assert "HTTPConnectionPool" in str(caught.value)  # what reason() is for
    assert http_client.reason(caught.value) == "[Errno 111] Connection refused"


def test_a_timeout_is_said_as_such():
    with socket.socket() as silent:  # accepts (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(requests.Timeout) as caught:
            http_client.request("GET", f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=0.3)
    assert http_client.reason(caught.value) == "timed out"


def test_reason_of_a_plain_error_is_its_text():
    assert http_client.reason(ValueError("Expecting value: line 1\n column 1")) == "Expecting value: line 1 column 1"


def test_error_statuses_are_answers(server):
    resp = http_client.request("POST", server + "/500/query", data={"q": "x"})
    assert resp.status_code == 500 and resp.json() == {"error": "boom"}
    assert servers.http("POST", server + "/401/query", b"")[0] == 401


def test_servers_http_returns_the_body_the_server_sent(server):
    _, headers, body = servers.http("GET", server + "/")
    assert body == b"x" * 1000 and "Content-Encoding" not in headers  # no gzip asked for
    _, headers, body = servers.http("GET", server + "/", headers={"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip" and body == b"x" * 1000  # asked for: requests decodes it


def test_show_http_source_one_line_errors(server, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("pässwörd\n")
    src = query.HttpSource(server + "/401", "iot", user="reader", password_file=secret)
    with pytest.raises(query.ShowError, match=r"^InfluxDB at http://127\.0\.0\.1:\d+/401 refused the query as reader "
                                              r"\(401\): \{\"error\":\"authorization failed\"\}$"):
        src.query(["SHOW DATABASES"])
    assert Influxish.seen_auth[-1] == "Basic " + base64.b64encode("reader:pässwörd".encode()).decode()  # UTF-8
    with pytest.raises(query.ShowError, match=r"refused the query without credentials \(401\)"):
        query.HttpSource(server + "/401", "iot").query(["SHOW DATABASES"])
    with pytest.raises(query.ShowError, match=r"/500 answered 500: \{\"error\":\"boom\"\}$"):
        query.HttpSource(server + "/500", "iot").query(["SHOW DATABASES"])
    with pytest.raises(query.ShowError, match=r"/html/query did not answer JSON: is it InfluxDB 1\.x\?$"):
        query.HttpSource(server + "/html", "iot").query(["SHOW DATABASES"])
    with pytest.raises(query.ShowError, match=r"^cannot reach InfluxDB at http://127\.0\.0\.1:\d+: \[Errno 111\] "
                                              r"Connection refused$"):
        query.HttpSource(f"http://127.0.0.1:{closed_port()}", "iot").query(["SHOW DATABASES"])
    assert query.HttpSource(server, "iot").query(["SHOW DATABASES"]) == [[]]
