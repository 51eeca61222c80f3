"""stacks/autotest/sut.py, the autotest's verdict, against stand-ins for the api and InfluxDB on
loopback (the real simulator posts to them): it passes when everything adds up and FAILS (exit 1)
when the api does not store what it acknowledged, reads back less, or InfluxDB counts otherwise.
The real stack runs it in the e2e autotest; here each way it can fail is shown."""
from __future__ import annotations

import importlib.util
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

SUT = Path(__file__).resolve().parents[2] / "stacks" / "autotest" / "sut.py"
WRITE_TOKEN, READ_TOKEN = "w" * 40, "r" * 40


def load_sut():
    spec = importlib.util.spec_from_file_location("sut_under_test", SUT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Backend:
    """The api and InfluxDB, faked over one store of readings; `faults` breaks one part on purpose."""

    def __init__(self, faults=()):
        self.faults = set(faults)
        self.readings: list[dict] = []
        self.lock = threading.Lock()

    def handler(self, role):
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                if role != "api" or self.path != "/data":
                    return self.reply(404, {})
                if self.headers.get("Authorization") != f"Bearer {WRITE_TOKEN}":
                    return self.reply(401, {"error": "token"})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                batch = body if isinstance(body, list) else [body]
                if "drop_writes" not in backend.faults:
                    with backend.lock:
                        backend.readings.extend(batch)
                self.reply(201, {"stored": len(batch)})

            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                args = {k: v[0] for k, v in parse_qs(url.query).items()}
                with backend.lock:
                    readings = list(backend.readings)
                if role == "influxdb":
                    prefix = re.search(r"=~ /\^([A-Za-z0-9_-]+)/", args.get("q", "")).group(1)
                    n = sum(str(r["sensor_id"]).startswith(prefix) for r in readings)
                    n += 1 if "influx_extra_point" in backend.faults else 0
                    series = [{"name": "data", "columns": ["time", "count"], "values": [[0, n]]}] if n else []
                    return self.reply(200, {"results": [{"statement_id": 0, "series": series}]})
                if url.path == "/readyz":
                    return self.reply(503 if "never_ready" in backend.faults else 200, {})
                if self.headers.get("Authorization") != f"Bearer {READ_TOKEN}":
                    return self.reply(401, {"error": "token"})
                if url.path == "/sensors":
                    ids = sorted({str(r["sensor_id"]) for r in readings})
                    return self.reply(200, {"count": len(ids), "sensors": [{"sensor_id": i} for i in ids]})
                if url.path == "/data":
                    rows = [r for r in readings if str(r["sensor_id"]) == args["sensor_id"]]
                    if "read_short" in backend.faults:
                        rows = rows[1:]
                    rows = rows[: int(args.get("limit", 100))]
                    return self.reply(200, {"count": len(rows), "readings": rows})
                return self.reply(404, {})

        return Handler


@pytest.fixture
def run_sut(tmp_path):
    servers = []

    def run(faults=(), **env_over):
        backend = Backend(faults)
        urls = {}
        for role in ("api", "influxdb"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), backend.handler(role))
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            servers.append(server)
            urls[role] = f"http://127.0.0.1:{server.server_address[1]}"
        (tmp_path / "w").write_text(WRITE_TOKEN + "\n")
        (tmp_path / "r").write_text(READ_TOKEN + "\n")
        env = {"SUT_API_URL": urls["api"], "SUT_INFLUXDB_URL": urls["influxdb"], "SUT_DEVICES": "3",
               "SUT_COUNT": "4", "SUT_TIMEOUT": "60", "SUT_WRITE_TOKEN_FILE": str(tmp_path / "w"),
               "SUT_READ_TOKEN_FILE": str(tmp_path / "r")}
        env.update(env_over)
        return load_sut().main(env), backend

    yield run
    for server in servers:
        server.shutdown()
        server.server_close()


def test_passes_when_everything_adds_up(run_sut, capsys):
    code, backend = run_sut()
    assert code == 0, capsys.readouterr().err
    assert len(backend.readings) == 12
    assert "PASS" in capsys.readouterr().err


@pytest.mark.parametrize("fault, says", [
    ("drop_writes", "GET /sensors lists 0 sensors"),          # 201 without storing
    ("read_short", "returned 3 readings, expected 4"),        # the read path loses one
    ("influx_extra_point", "InfluxDB holds 13 points"),       # a duplicate in storage
])
def test_fails_when_something_does_not_add_up(run_sut, capsys, fault, says):
    code, _ = run_sut(faults=[fault])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "FAIL" in err and says in err


def test_fails_when_the_api_never_gets_ready(run_sut, capsys):
    code, backend = run_sut(faults=["never_ready"], SUT_TIMEOUT="2")
    assert code == 1
    assert "not ready before the deadline" in capsys.readouterr().err
    assert backend.readings == []


def test_a_wrong_token_fails(run_sut, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.write_text("x" * 40)
    code, _ = run_sut(SUT_WRITE_TOKEN_FILE=str(bad))
    assert code == 1
    assert "stored 0 of 12" in capsys.readouterr().err


def test_bad_settings_are_a_setup_error(run_sut, capsys):
    code, _ = run_sut(SUT_DEVICES="many")
    assert code == 2
    assert "SUT_DEVICES='many'" in capsys.readouterr().err
    code, _ = run_sut(SUT_READ_TOKEN_FILE="/nonexistent/token")
    assert code == 2
