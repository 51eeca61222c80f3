"""Every task's `--dry` prints exactly what the task runs (issue #14): each task of `./iot --list` runs as a user
runs it (`python -m ops.cli [--dry] TASK ARGS`, cwd the repository), once with --dry and once for real, against
stand-ins for docker, docker-machine and ssh first on PATH. The stand-ins answer the read-only questions plausibly
(an engine in swarm mode, images present, one service, one node…) and record every call; a small HTTP server
in this process stands in for the api, a registry and InfluxDB where a task talks HTTP.

For each task, with IOT_RECORD_COMMANDS (ops/run.py: every echoed command, run or would-run, one JSON argv a
line; invoke's `c.run` echo records too, ops/cli.py):
  (a) the dry record equals the real record (after NORMALIZE: random work-directory names, timestamps and
      git revisions differ between two runs by design);
  (b) every dry-recorded command appears in the dry output as printed text (ops.run.shown), and every
      `would run: CMD` line of the output is a recorded command;
  (c) the stand-ins received, in order, exactly the recorded commands of the real run that are theirs,
      plus reads (is_read: inspect, ls, ps, version… asked without echo; they run in dry runs too);
  (d) the dry run made no stand-in call other than reads.
Reads are the rule's one exclusion: a read that is echoed (docker-machine env) is in both records anyway.

A task that cannot run for real here (it would install packages, rewrite the locks from PyPI, measure for
minutes, start Docker-in-Docker nodes…) says why in its entry's reason, printed when the test runs, and the
test checks what it can: the dry run changes nothing and prints every command it records. A task that runs
no command says so and both its records must be empty. A known gap (issue #14 work in progress elsewhere) is
an xfail(strict) naming it: it fails loudly once the gap is closed, so the entry gets updated.

test_every_task_has_an_entry fails when a task of the program's collection has no entry here.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ops import run as ops_run

ROOT = Path(__file__).resolve().parents[2]

# The stand-in for docker, docker-machine and ssh: appends [program, *args] to $REC_LOG, answers the reads.
# STANDIN_* variables (an entry's `env`) choose the state it describes.
STAND_IN = r'''#!{python}
import json, os, subprocess, sys
prog = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(os.environ["REC_LOG"], "a") as log:
    log.write(json.dumps([prog, *args]) + "\n")
state = os.environ.get
SHA = "0123456789abcdef0123456789abcdef01234567"  # the images' revision label

def out(text):
    sys.stdout.write(text + ("\n" if text else ""))
    sys.exit(0)

if prog == "docker-machine":
    if args[:1] == ["env"]:
        out('export DOCKER_TLS_VERIFY="1"\nexport DOCKER_HOST="tcp://192.0.2.10:2376"\n'
            'export DOCKER_CERT_PATH="/tmp/machine/certs"\nexport DOCKER_MACHINE_NAME="' + args[-1] + '"')
    if args[:1] == ["ip"]:
        out("192.0.2.10")
    out("")
if prog == "ssh":
    out("")
# docker
if "--format" in args and args[:1] == ["info"]:
    out(state("STANDIN_SWARM", "active true"))
if args[:1] == ["info"]:
    out("Server Version: 20.10.24")
if args[:2] == ["compose", "version"]:
    out("Docker Compose version v2.40.3")
if args[:2] == ["buildx", "version"]:
    sys.exit("docker: 'buildx' is not a docker command.")
if args[:1] == ["version"]:
    out("20.10.24" if "{{{{.Client.Version}}}}" in args else "server 20.10.24, client 20.10.24")
if args[:2] == ["image", "inspect"]:
    if "--format" in args and "{{{{.Size}}}}" in args:
        out("1000")
    if "--format" in args:
        out('"sha256:' + "ab" * 32 + '" {{"org.opencontainers.image.revision": "' + SHA + '"}}')
    out(json.dumps([{{"Id": "sha256:" + "ab" * 32}}]))
if args[:2] in (["container", "inspect"], ["volume", "inspect"]):
    if state("STANDIN_REGISTRY") and args[0] == "container":
        out(json.dumps([{{"State": {{"Running": True}}, "Config": {{"Labels": {{"iot.registry": "local"}}}},
                         "HostConfig": {{"PortBindings": {{}}}}}}]))
    sys.exit("Error: No such " + args[0] + ": " + args[-1])
if args[:2] == ["context", "ls"] and state("STANDIN_CLUSTER"):
    name = state("STANDIN_CLUSTER")
    out("\n".join(json.dumps({{"Name": f"iot-{{name}}-{{i}}", "Description": f"iot cluster {{name}} (ssh, {{role}})",
                               "DockerEndpoint": f"ssh://root@192.0.2.{{i}}"}})
                   for i, role in ((1, "manager"), (2, "worker"))))
if args[:2] == ["stack", "ls"]:
    out("iot-dev")
if args[:2] == ["service", "ls"]:
    out("s1" if state("STANDIN_SERVICES") else "")
if args[:2] == ["service", "inspect"]:
    out(json.dumps([{{"ID": "s1", "Spec": {{"Name": "iot-dev_api", "Labels": {{}},
                     "Mode": {{"Replicated": {{"Replicas": 1}}}},
                     "TaskTemplate": {{"ContainerSpec": {{"Image": "iot/api:0.1.0"}}}}}},
                     "PreviousSpec": {{"Name": "iot-dev_api"}}}}]))
if args[:2] == ["node", "ls"]:
    out("node1" if "-q" in args else "Ready Active")
if args[:2] == ["node", "inspect"]:
    out(json.dumps([{{"ID": "node1", "Spec": {{"Labels": {{}}}}}}]))
if args[:2] == ["volume", "ls"]:
    out("iot-dev_influxdb-data")
if args[:1] == ["ps"]:
    out("" if "-aq" in args or "-a" in args else "c0ffee000001")
if args[:1] == ["exec"] and "python3" in args:  # ops/db.py's query script: InfluxQL on stdin
    q = json.load(sys.stdin)["q"]
    if q.startswith("SHOW DATABASES"):
        out(json.dumps({{"results": [{{"series": [{{"values": [["iot"]]}}]}}]}}))
    if q.startswith("SHOW RETENTION POLICIES"):
        out(json.dumps({{"results": [{{"series": [{{"columns": ["name", "duration", "shardGroupDuration", "default"],
                                                   "values": [["iot_rp", "0s", "168h0m0s", True]]}}]}}]}}))
    if "count(" in q:
        out(json.dumps({{"results": [{{"series": [{{"tags": {{"sensor_id": "s1"}}, "values": [[0, 5]]}}]}}]}}))
    out(json.dumps({{"results": [{{}}]}}))
if args[:1] == ["exec"] and "-cz" in args:  # tar of the backup: any bytes will do
    sys.stdout.buffer.write(b"\x1f\x8b not really a backup")
    sys.exit(0)
if args[:1] == ["run"] and ("--publish" in args or "-p" in args):  # registry.start: something answers /v2/
    spec = args[args.index("--publish" if "--publish" in args else "-p") + 1]
    port = spec.rsplit(":", 2)[-2]
    subprocess.Popen([sys.executable, os.environ["STANDIN_V2"], port], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
out("")
'''

# A registry answering /v2/ for a few seconds, started by the stand-in's `docker run` (registry.start waits for it).
V2_SERVER = r'''import sys, http.server, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
threading.Timer(8, s.shutdown).start()
s.serve_forever()
'''

# Reads: what the stand-ins are asked without an echo, in dry runs too. Anything else is a change.
READS = {("info",), ("version",), ("compose", "version"), ("buildx", "version"), ("image", "inspect"),
         ("container", "inspect"), ("volume", "inspect"), ("inspect",), ("volume", "ls"), ("service", "ls"),
         ("service", "inspect"), ("service", "ps"), ("node", "ls"), ("node", "inspect"), ("stack", "ls"),
         ("stack", "config"), ("ps",), ("network", "ls"), ("secret", "ls"), ("config", "ls"), ("context", "ls"),
         ("context", "inspect"), ("logs",)}
MACHINE_READS = {("env",), ("ls",), ("ip",), ("inspect",)}
STAND_INS = ("docker", "docker-machine", "ssh")


def is_read(call: list[str]) -> bool:
    prog, args = call[0], call[1:]
    if prog == "docker-machine":
        return any(tuple(args[:len(r)]) == r for r in MACHINE_READS)
    if prog != "docker":
        return False
    if args[:1] == ["exec"] and "python3" in args:  # the InfluxQL query script (db, show): see db_queries()
        return True
    return any(tuple(args[:len(r)]) == r for r in READS)


# Between a dry and a real run these differ by design: random work directories and database names, the time
# of a build, the checkout's revision (other work may commit in between).
NORMALIZE = [(re.compile(r"(iot-(?:backup|restore)-)[0-9a-f]{10}"), r"\1<id>"),
             (re.compile(r"(_restore_)[0-9a-f]{8}"), r"\1<id>"),
             (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<time>"),
             (re.compile(r"\b[0-9a-f]{40}(-dirty)?\b"), "<revision>")]


def normalize(cmds: list[list[str]]) -> list[list[str]]:
    def one(arg: str) -> str:
        for pattern, repl in NORMALIZE:
            arg = pattern.sub(repl, arg)
        return arg
    return [[os.path.basename(c[0]), *map(one, c[1:])] for c in cmds]


# -- the HTTP stand-in: api (POST/GET /data), registry (/v2/), InfluxDB (/query) -------------------------------
class Handler(BaseHTTPRequestHandler):
    seen: list[str] = []

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's name
        Handler.seen.append(f"GET {self.path}")
        if self.path.startswith("/query"):
            self._answer(200, {"results": [{"statement_id": 0}]})
        elif self.path.startswith("/data"):
            self._answer(200, {"count": 1, "readings": [{"sensor_id": "s1", "type": "temp", "value": 1.0}]})
        else:
            self._answer(200, {})

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace")
        Handler.seen.append(f"POST {self.path}")
        if self.path.startswith("/query"):
            statements = [s for s in body.split("%3B") if s.strip()]
            self._answer(200, {"results": [{"statement_id": i} for i in range(max(1, len(statements)))]})
        else:
            self._answer(201, {"stored": 1})

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_stand_in():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def backup_file(path: Path) -> Path:
    """A file db.restore accepts: the iot manifest and an influxd portable manifest in a .tar.gz."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("iot-backup.json", json.dumps({"db": "iot", "count": 5, "exact": True}).encode()),
                           ("20260101T000000Z.manifest", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    assert gzip.decompress(path.read_bytes())
    return path


# -- the table --------------------------------------------------------------------------------------------------
COMPARED, NO_COMMAND, DRY_ONLY = "compared", "runs no command", "dry only"


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]                   # TASK and its options; {port} is the HTTP stand-in's, {tmp} a folder
    how: str = COMPARED
    reason: str = ""                        # why a real run is not made (DRY_ONLY), or what a NO_COMMAND task does
    env: dict = field(default_factory=dict)  # for the stand-ins (STANDIN_*)
    real_ok: bool = True                    # the real run exits 0 (False: the verdict is not this test's)
    gap: str = ""                           # a known gap: xfail(strict) until it is closed
    extra: tuple[str, ...] = ()             # more stand-ins on PATH (env: invoke's `env K=V python …`)
    records: bool = True                    # DRY_ONLY: its --dry echoes commands (False: it prints a plan of its own)
    exit: int = 0                           # both runs end with this status (1: refused, the same way)
    installs: tuple[str, ...] = ()          # test paths whose programs (ops.needs) it installs when missing
    dev_tools: bool = False                 # installs requirements-dev.lock when this venv lacks it (ops.devtools)


RUN_ELSEWHERE = "tests/unit/test_cluster_commands.py runs the dry plan against the real create/rm"
TABLE: dict[str, list[Case]] = {
    "api": [Case(("api", "--port", "19999"), extra=("env",))],  # env(1) stood in: the api itself never starts
    "simulate": [Case(("simulate", "--url", "http://127.0.0.1:{port}", "--count", "1"))],
    "test": [Case(("test", "--layer", "unit", "--jobs", "1", "-k", "test_reads_run_in_a_dry_run_too"),
                  installs=("tests/unit",), dev_tools=True, real_ok=False)],  # collects the whole unit layer: a
    # file being edited elsewhere fails that run; the verdict is the repository's, the commands are compared
    "lint": [Case(("lint",), real_ok=False, dev_tools=True)],  # the verdict is the repository's, not this test's
    "bench": [Case(("bench", "--seconds", "1"), DRY_ONLY,
                   "the real run measures for minutes with wrk against real api and influxd processes that ops.bench "
                   "starts itself (not commands of a plan): --dry prints the scenarios instead", records=False)],
    "engine": [Case(("engine",), NO_COMMAND, "the engine and Compose answer (docker info, docker compose version): "
                    "nothing to install")],
    "render": [Case(("render",), NO_COMMAND, "writes build/ENV and secrets/ENV, runs no command")],
    "build": [Case(("build",)), Case(("build", "--no-cache", "--env", "test"))],
    "up": [Case(("up", "--set", "api.published_port={port}")), Case(("up", "--no-simulator", "--no-build"))],
    "down": [Case(("down", "--volumes"))],
    "logs": [Case(("logs", "--service", "api", "--follow"))],
    "ps": [Case(("ps",))],
    "autotest": [Case(("autotest",))],
    "images.bootstrap": [Case(("images.bootstrap",), NO_COMMAND, "the offline bases are present (docker image "
                               "inspect): nothing to build"),
                         Case(("images.bootstrap", "--force"), DRY_ONLY,
                              "the real run debootstraps Debian from the mirror and builds three images")],
    "images.name": [Case(("images.name", "influxdb"), NO_COMMAND, "prints an image name")],
    "tag": [Case(("tag",))],
    "push": [Case(("push", "--registry", "127.0.0.1:{port}/"))],
    "registry.start": [Case(("registry.start", "--port", "{free_port}", "--name", "iot-registry-dvr"))],
    "registry.stop": [Case(("registry.stop", "--name", "iot-registry-dvr"), env={"STANDIN_REGISTRY": "1"})],
    "deploy": [Case(("deploy", "--timeout", "1", "--url", "http://127.0.0.1:{port}")),
               Case(("deploy", "--timeout", "1", "--no-smoke", "--machine", "m1"))],
    "undeploy": [Case(("undeploy", "--volumes"))],
    "rollback": [Case(("rollback",), env={"STANDIN_SERVICES": "1"}),
                 Case(("rollback", "--machine", "m1"), env={"STANDIN_SERVICES": "1"})],  # docker-machine env: echoed
    "status": [Case(("status",), NO_COMMAND, "reads the services and their tasks", env={"STANDIN_SERVICES": "1"})],
    "scale": [Case(("scale", "--service", "api=2"))],
    "swarm.init": [Case(("swarm.init",), env={"STANDIN_SWARM": "inactive false"}),
                   Case(("swarm.init",), NO_COMMAND, "already in swarm mode")],
    "db.backup": [Case(("db.backup", "--out", "{tmp}/backup.tar.gz"))],
    "db.restore": [Case(("db.restore", "--file", "{tmp}/in.tar.gz", "--force")),
                   Case(("db.restore", "--file", "{tmp}/in.tar.gz"), NO_COMMAND, "refuses, dry or not: the live "
                        "database holds points and there is no --force", exit=1)],
    "show": [Case(("show", "--influxdb-url", "http://127.0.0.1:{port}"), NO_COMMAND,
                  "queries InfluxDB (here directly, --influxdb-url; else through the api container, a read); the "
                  "HTTP stand-in holds no readings, so the real run ends with `no readings` after its queries",
                  real_ok=False)],
    "deps.lock": [Case(("deps.lock",), DRY_ONLY, "the real run rewrites requirements*.lock from PyPI (uv pip compile)")],
    "cluster.create": [
        Case(("cluster.create", "--driver", "local", "--workers", "1"), DRY_ONLY,
             "the real run starts Docker-in-Docker nodes and a registry on this engine; " + RUN_ELSEWHERE),
        Case(("cluster.create", "--ssh", "root@192.0.2.1", "--ssh", "root@192.0.2.2"), DRY_ONLY,
             "the real run forms a swarm over ssh contexts, with values known only then (join tokens, node ids: "
             "shown <…>); " + RUN_ELSEWHERE),
        Case(("cluster.create", "--driver", "generic", "--workers", "1"), DRY_ONLY,
             "the real run creates Docker Machine nodes, with values known only then (ips, TLS files: shown <…>); "
             + RUN_ELSEWHERE)],
    "cluster.ls": [Case(("cluster.ls",), NO_COMMAND, "lists containers and contexts (reads)")],
    "cluster.rm": [Case(("cluster.rm", "--name", "dvr"), env={"STANDIN_CLUSTER": "dvr"})],
}


def program_tasks() -> list[str]:
    """The tasks of the collection `./iot` runs (tasks/__init__.py's ns), as `./iot --list` names them."""
    from tasks import ns

    return sorted(ns.task_names)


def test_every_task_has_an_entry():
    """A new task must say here how its --dry is held to what it runs."""
    tasks = program_tasks()
    assert len(tasks) > 20, tasks
    assert sorted(set(tasks) - set(TABLE)) == [], "tasks without an entry in TABLE"
    assert sorted(set(TABLE) - set(tasks)) == [], "entries for tasks that are gone"


CASES = [pytest.param(task, case, id=f"{task}[{i}]" if len(cases) > 1 else task,
                      marks=[pytest.mark.xfail(strict=True, reason=case.gap)] if case.gap else [])
         for task, cases in TABLE.items() for i, case in enumerate(cases)]


def would_install(case: Case) -> str:
    """Why the real run of CASE would install something on this machine ("" when it would not)."""
    from ops import devtools, needs

    lacking = [n.command for n in needs.needed(list(case.installs), ROOT) if not n.found()]
    if lacking:
        return f"the real run would apt-get install {', '.join(lacking)} (missing here)"
    stamp = devtools.stamp_path()
    if case.dev_tools and not (stamp.exists() and stamp.read_text().strip() == devtools.digest()):
        return f"the real run would pip install {devtools.DEV} (this venv lacks it, or it changed)"
    return ""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iot(args: list[str], dry: bool, record: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, ops_run.RECORD_ENV: str(record), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "ops.cli", *(["--dry"] if dry else []), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def db_queries(output: str, dry: bool) -> list[str]:
    """The InfluxQL changes db.restore prints: `would query: Q` in a dry run, `query: Q` for real (they go to
    the api container on stdin of one and the same `docker exec … python3` command, a read to the record)."""
    marker = "would query: " if dry else "query: "
    return [normalize([["x", line.split(marker, 1)[1]]])[0][1] for line in output.splitlines()
            if line.startswith(marker) or f" {marker}" in line[:len(marker) + 12]]


@pytest.mark.parametrize(("task", "case"), CASES)
def test_dry_prints_what_the_task_runs(task, case, stand_ins, tmp_path, monkeypatch, http_stand_in):
    calls = stand_ins(STAND_IN, *STAND_INS, *case.extra)
    v2 = tmp_path / "v2.py"
    v2.write_text(V2_SERVER)
    monkeypatch.setenv("STANDIN_V2", str(v2))
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    backup_file(tmp_path / "in.tar.gz")
    args = [a.format(port=http_stand_in, tmp=tmp_path, free_port=free_port()) for a in case.args]
    if case.reason:
        print(f"{task}: {case.how}: {case.reason}")

    dry = iot(args, True, tmp_path / "dry.jsonl")
    dry_out = dry.stdout + dry.stderr
    assert dry.returncode == case.exit, dry_out
    dry_record = ops_run.read_record(tmp_path / "dry.jsonl")
    dry_calls = calls()
    # (b) every recorded command is printed; (d) the dry run changed nothing
    missing = [c for c in dry_record if ops_run.shown(c) not in dry_out]
    assert missing == [], f"recorded but not printed:\n{missing}\n--- output:\n{dry_out}"
    assert [c for c in dry_calls if not is_read(c)] == [], "--dry made calls that change something"
    # and the other way: every `would run: CMD` line shows a recorded command (with its `K=V`, `< FILE`; a pipe
    # `A | B`: both). `would run: POST URL …` is an HTTP request, not a command.
    shown = [ops_run.shown(c) for c in dry_record]
    unrecorded = [line for line in dry_out.splitlines() if "would run: " in line
                  and not re.match(r"(GET|POST) ", line.split("would run: ", 1)[1])
                  and not all(any(s in part for s in shown) for part in line.split("would run: ", 1)[1].split(" | "))]
    installs = would_install(case)
    # what a task installs first (ops.needs' apt-get, ops.devtools' pip) goes through ops.run too
    assert unrecorded == [], "printed as `would run:` but not recorded (not echoed through ops.run)"
    if installs:  # not here: the dry run is what can be checked
        print(f"{task}: dry only: {installs}")
    if case.how == DRY_ONLY or installs:
        assert bool(dry_record) == case.records or installs, f"--dry {task}:\n{dry_out}"
        return

    started = len(dry_calls)
    real = iot(args, False, tmp_path / "real.jsonl")
    real_out = real.stdout + real.stderr
    if case.real_ok:
        assert real.returncode == case.exit, real_out
    real_record = ops_run.read_record(tmp_path / "real.jsonl")
    real_calls = calls()[started:]
    if case.how == NO_COMMAND:
        assert (dry_record, real_record) == ([], []), real_out
        assert [c for c in real_calls if not is_read(c)] == []
        return
    # (a) the same commands, dry and real
    assert real_record, f"{task} recorded no command:\n{real_out}"
    assert normalize(dry_record) == normalize(real_record), f"--- dry:\n{dry_out}\n--- real:\n{real_out}"
    assert db_queries(dry_out, True) == db_queries(real_out, False)
    if task == "db.restore":  # the changes it makes through the query script are compared, not just none of them
        assert [q.split()[0] for q in db_queries(real_out, False)] == ["CREATE", "SELECT", "DROP"], real_out
    # (c) the stand-ins got exactly the recorded commands that are theirs, and reads
    theirs = [c for c in normalize(real_record) if c[0] in (*STAND_INS, *case.extra)]
    changes = [c for c in normalize(real_calls) if not is_read(c)]
    assert changes == [c for c in theirs if not is_read(c)], f"--- real:\n{real_out}"
    assert all(c in normalize(real_calls) for c in theirs)
    print(f"{task}: compared {len(real_record)} commands, {len(changes)} of them changes the stand-ins made: "
          + "; ".join(" ".join(c[:3]) for c in changes))
    if task in ("simulate", "up"):
        assert any(s.startswith(("POST /data", "GET /data")) for s in Handler.seen)
