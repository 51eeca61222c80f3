"""The MQTT module in the local stack on a real Docker engine, started by `./iot up --env test` like a
person would (tests/e2e/test_stack.py's style and env: offline bases, compose project iot-test).

What is checked, each on the running containers: the broker (not published) refuses anonymous clients
and wrong passwords and enforces its ACL; the fleet's readings reach InfluxDB through the historian (the
count grows); the processor's retained aggregates are on the broker; nginx serves the page with its CSP
and upgrades /mqtt to a WebSocket (101) through to the broker.

The broker is on the internal network only, so the MQTT checks run a small raw-socket MQTT 3.1.1 client
(no library needed) inside the historian container, with the historian's own password file.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest
from harness import call, influx_count_in_container

from ops import render, secrets, stack

ROOT = Path(__file__).resolve().parents[2]

ENV = "test"
pytestmark = pytest.mark.usefixtures("docker_engine")

# Runs inside the historian container (python of the api image): `python - MODE` with this on stdin.
# Prints one JSON line. MODE auth: CONNACK return codes of anonymous, wrong-password and right-password
# connections. MODE subscribe: the messages delivered within a few seconds for agg/# and meta/# (the
# historian may read agg/# but not meta/#: the ACL's refusal is silence, not an error).
MQTT_PROBE = r'''
import json, os, socket, struct, sys, time, uuid
HOST, PORT = os.environ["MQTT_HOST"], int(os.environ["MQTT_PORT"])
USER = os.environ["MQTT_USERNAME"]
PASSWORD = open(os.environ["MQTT_PASSWORD_FILE"]).read().strip()

def s16(text):
    b = text.encode()
    return struct.pack("!H", len(b)) + b

def packet(kind, body):
    n, length = len(body), bytearray()
    while True:
        n, digit = n // 128, n % 128
        length.append(digit | (0x80 if n else 0))
        if not n:
            return bytes([kind]) + bytes(length) + body

def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data

def read_packet(sock):
    head = read_exact(sock, 1)[0]
    n, mult = 0, 1
    while True:
        b = read_exact(sock, 1)[0]
        n, mult = n + (b & 127) * mult, mult * 128
        if not b & 128:
            return head, read_exact(sock, n)

def connect(user, password):
    sock = socket.create_connection((HOST, PORT), timeout=10)
    flags = 0x02 | (0x80 if user else 0) | (0x40 if password is not None else 0)
    body = s16("MQTT") + bytes([4, flags]) + struct.pack("!H", 30) + s16("e2e-" + uuid.uuid4().hex[:10])
    body += (s16(user) if user else b"") + (s16(password) if password is not None else b"")
    sock.sendall(packet(0x10, body))
    head, rest = read_packet(sock)
    assert head == 0x20, head
    return sock, rest[1]

if sys.argv[1] == "auth":
    out = {}
    for name, user, password in (("anonymous", None, None), ("wrong", USER, PASSWORD + "x"), ("right", USER, PASSWORD)):
        sock, rc = connect(user, password)
        sock.close()
        out[name] = rc
    print(json.dumps(out))
else:
    sock, rc = connect(USER, PASSWORD)
    assert rc == 0, rc
    sock.sendall(packet(0x82, struct.pack("!H", 1) + s16("agg/#") + b"\x00" + s16("meta/#") + b"\x00"))
    got, deadline = [], time.monotonic() + float(sys.argv[2])
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            head, body = read_packet(sock)
        except socket.timeout:
            continue
        if head >> 4 == 3:  # PUBLISH, QoS 0 (the subscription's): topic, then the payload
            n = struct.unpack("!H", body[:2])[0]
            got.append({"topic": body[2:2 + n].decode(), "retain": bool(head & 1),
                        "payload": body[2 + n:].decode(errors="replace")})
    print(json.dumps({"suback": True, "messages": got}))
'''


def iot(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(ROOT / "iot"), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"./iot {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def compose(prepared: stack.Stack, *args: str, input_text: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = prepared.compose(*args, profiles=("simulator",))
    proc = subprocess.run(shlex.split(cmd), cwd=ROOT, capture_output=True, text=True, timeout=timeout, input=input_text,
                          env={**os.environ, **prepared.run_env()})
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def mqtt_probe(prepared: stack.Stack, *args: str) -> dict:
    proc = compose(prepared, "exec", "-T", "historian", "python", "-", *args, input_text=MQTT_PROBE)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fleet_count(prepared: stack.Stack) -> int:
    values = render.load_values(ENV, {"bases.mode": "offline"})["influxdb"]
    return influx_count_in_container(lambda argv: compose(prepared, "exec", "-T", "api", *argv).stdout, values,
                                     "WHERE \"sensor_id\" =~ /^tls-/")


@pytest.fixture(scope="module")
def mqtt_stack(offline_bases):
    """`./iot up --env test` once for the module (builds every image, the broker's and the page's too);
    `./iot down --env test --volumes` at the end."""
    iot("down", "--env", ENV, "--volumes", check=False)
    started = time.monotonic()
    proc = iot("up", "--env", ENV)
    print(f"./iot up --env {ENV}: {time.monotonic() - started:.1f} s")
    prepared = stack.prepare(ENV, need_engine=False)
    yield prepared, proc
    if os.environ.get("IOT_E2E_KEEP") != "1":  # keep it to look around after a failure
        iot("down", "--env", ENV, "--volumes", check=False)


def test_up_prints_the_page_and_where_its_credentials_are(mqtt_stack):
    prepared, proc = mqtt_stack
    assert "web: http://localhost:18088" in proc.stdout
    assert "MQTT broker passwords: mqtt_<role>_password" in proc.stdout
    out = compose(prepared, "ps", "--format", "json").stdout.strip()
    rows = json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines() if line.strip()]
    states = {row["Service"]: row for row in rows}  # Compose prints an array or one object per line
    for name in ("mqtt", "historian", "web"):  # the ones with a healthcheck
        assert states[name]["Health"] == "healthy", (name, states[name])
    for name in ("processor", "fleet"):
        assert states[name]["State"] == "running", (name, states[name])
    assert not states["mqtt"].get("Publishers") or all(not p.get("PublishedPort") for p in states["mqtt"]["Publishers"])
    for name in secrets.ALL:  # no secret value printed
        value = (ROOT / "secrets" / ENV / name).read_text().strip()
        if name != secrets.MOSQUITTO_ACL:
            assert value not in proc.stdout and value not in proc.stderr


def test_broker_refuses_anonymous_and_wrong_passwords(mqtt_stack):
    prepared, _ = mqtt_stack
    rcs = mqtt_probe(prepared, "auth")
    assert rcs["right"] == 0, rcs  # the control: the same client gets in with the right password
    assert rcs["anonymous"] == 5, rcs  # not authorised
    assert rcs["wrong"] in (4, 5), rcs  # bad user name or password / not authorised


def test_fleet_readings_reach_influxdb_through_the_historian(mqtt_stack):
    prepared, _ = mqtt_stack
    deadline = time.monotonic() + 120
    first = 0
    while time.monotonic() < deadline and first == 0:
        first = fleet_count(prepared)
        time.sleep(2)
    assert first > 0, "no reading of the fleet (sensor ids tls-*) stored within 120 s"
    started, second = time.monotonic(), first
    while time.monotonic() - started < 30 and second <= first:  # 77 stations at 1 s: more within seconds
        time.sleep(1)
        second = fleet_count(prepared)
    print(f"fleet readings in InfluxDB: {first} then {second} {time.monotonic() - started:.1f} s later")
    assert second > first, f"the count stayed at {first} for 30 s: the fleet's readings stopped arriving"


def test_processor_aggregates_are_retained_and_the_acl_holds(mqtt_stack):
    prepared, _ = mqtt_stack
    deadline = time.monotonic() + 90
    messages: list = []
    while time.monotonic() < deadline:
        messages = mqtt_probe(prepared, "subscribe", "3")["messages"]
        if any(m["topic"].startswith("agg/") for m in messages):
            break
        time.sleep(3)
    aggs = [m for m in messages if m["topic"].startswith("agg/")]
    assert aggs, f"no retained agg/# message within 90 s: {messages[:5]}"
    assert any(m["retain"] for m in aggs)
    agg = json.loads(aggs[0]["payload"])
    assert {"district", "type", "mean", "min", "max", "n"} <= set(agg), agg
    assert aggs[0]["topic"] == f"agg/{agg['district']}/{agg['type']}"
    # meta/sensors/* are retained by the fleet, but the historian may not read meta/#
    assert not [m for m in messages if m["topic"].startswith("meta/")]


def http_raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def test_page_is_served_with_its_csp(mqtt_stack):
    prepared, _ = mqtt_stack
    resp = call("GET", prepared.result.urls["web"] + "/")
    body, csp = resp.text, resp.headers.get("Content-Security-Policy", "")
    assert resp.status_code == 200, (resp.status_code, body[:300])
    assert "<svg" in body or "<html" in body.lower()
    assert "default-src" in csp and "'unsafe-eval'" not in csp, csp
    assert "http://" not in csp and "https://" not in csp  # no CDN, no outside origin


def test_mqtt_path_upgrades_to_the_broker_websocket(mqtt_stack):
    """Through nginx (the only way in): a WebSocket upgrade with the mqtt subprotocol answers 101 with the
    accept key RFC 6455 derives from ours, i.e. it reached a WebSocket server (mosquitto)."""
    key = base64.b64encode(os.urandom(16)).decode()
    port = render.load_values(ENV, {"bases.mode": "offline"})["web"]["published_port"]
    answer = http_raw(port, (f"GET /mqtt HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n"
                             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                             "Sec-WebSocket-Protocol: mqtt\r\n\r\n").encode())
    head = answer.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    assert head.startswith("HTTP/1.1 101"), head
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()  # noqa: S324
    assert f"sec-websocket-accept: {accept.lower()}" in head.lower(), head
    assert "sec-websocket-protocol: mqtt" in head.lower(), head
