"""`./iot db.backup` of a populated Compose stack, `./iot db.restore` into a fresh one: same counts.

Env `test`, but its own compose project (iotbk-test) and api port (18190), so it never meets the other
e2e stacks on this engine. The stack is rendered into a temporary folder (secrets: secrets/test) and run
with `docker compose` directly: `./iot up --set project=…` would rewrite build/test/compose.yaml, which
the other e2e tests use at the same time. The db tasks render nothing, so they are run as a person would.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from ops import db, render, stack

ROOT = Path(__file__).resolve().parents[2]

ENV = "test"
SETS = ["project=iotbk", "api.published_port=18190", "web.published_port=18191"]  # beside a live test stack
pytestmark = pytest.mark.usefixtures("docker_engine")


def iot(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    argv = [str(ROOT / "iot"), *args, "--env", ENV]
    for item in SETS:
        argv += ["--set", item]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def compose(prepared: stack.Stack, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`docker compose` on the rendered file; the simulator's profile too, except for `up` (no simulator)."""
    cmd = prepared.compose(*args, profiles=() if args[0] == "up" else ("simulator",))
    proc = subprocess.run(shlex.split(cmd), cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, **prepared.run_env()}, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def counts(prepared: stack.Stack) -> dict[str, int]:
    """{sensor_id: points} straight from InfluxDB's HTTP API, from inside the api container."""
    target = db.target_for(ENV, render.parse_overrides(SETS))
    params = {"q": db.count_statement(target)}
    if target.admin_user:  # influxdb.auth: the admin's credentials, through stdin
        params.update(u=target.admin_user, p=target.admin_password_file.read_text().strip())
    script = ("import json, sys, urllib.parse, urllib.request; "  # stdlib: the api's image has no requests
              "print(urllib.request.urlopen('http://influxdb:8086/query?' + urllib.parse.urlencode("
              "json.load(sys.stdin))).read().decode())")
    out = compose(prepared, "exec", "-T", "api", "python3", "-c", script, stdin=json.dumps(params)).stdout
    return db.parse_counts(json.loads(out))


def wait_ready(prepared: stack.Stack, timeout: float = 60) -> None:
    """`up --wait` returns with the api healthy; make sure its database is there before counting."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if compose(prepared, "exec", "-T", "api", "python3", "-c", "print(1)", check=False).returncode == 0:
            return
        time.sleep(1)


@pytest.fixture
def bk_stack(offline_bases, tmp_path):
    overrides = {"bases.mode": "offline", **render.parse_overrides(SETS)}
    # secrets/test as every `./iot … --env test`: the db tasks read the InfluxDB admin password there
    prepared = stack.Stack(render.render(ENV, out_dir=tmp_path / "build", overrides=overrides))
    assert prepared.result.project == "iotbk-test"
    compose(prepared, "down", "--volumes", "--remove-orphans", check=False)
    compose(prepared, "build")
    try:
        yield prepared
    finally:
        compose(prepared, "down", "--volumes", "--remove-orphans", check=False)


def test_backup_of_a_populated_stack_restores_into_a_fresh_one_with_the_same_counts(bk_stack, tmp_path):
    prepared = bk_stack
    t0 = time.monotonic()
    compose(prepared, "up", "--detach", "--wait", "--remove-orphans")
    wait_ready(prepared)
    proc = compose(prepared, "run", "--rm", "--no-deps", "simulator", "--devices", "10", "--count", "20",
                   "--interval", "0", "--json")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["stored"] == summary["generated"] == 10 * 20 * 2
    original = counts(prepared)
    assert sum(original.values()) == 400 and len(original) == 10, original

    archive = tmp_path / "bk.tar.gz"
    out = iot("db.backup", "--out", str(archive)).stdout
    assert "400 points of 10 sensors at backup time" in out, out
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile(f"./{db.MANIFEST}"))
    assert manifest["count"] == 400 and manifest["exact"] and manifest["db"] == "iot"
    assert db.check_archive(archive)["counts"] == original

    refused = iot("db.restore", "--file", str(archive), check=False)  # the database holds data: refused
    assert refused.returncode == 1 and "already holds 400 points" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    t_backup = time.monotonic() - t0

    compose(prepared, "down", "--volumes", "--remove-orphans")
    compose(prepared, "up", "--detach", "--wait", "--remove-orphans")
    wait_ready(prepared)
    assert counts(prepared) == {}  # a fresh volume

    t1 = time.monotonic()
    out = iot("db.restore", "--file", str(archive)).stdout
    assert "now holds 400 points" in out, out
    restored = counts(prepared)
    assert restored == original  # total and per sensor
    for sensor in sorted(original)[:2]:  # two sensors by name, spelled out
        assert restored[sensor] == original[sensor] == 40

    again = iot("db.restore", "--file", str(archive), "--force").stdout  # merging the same points: no duplicates
    assert "now holds 400 points" in again, again
    assert counts(prepared) == original
    print(f"populate+backup {t_backup:.1f} s, restore+checks {time.monotonic() - t1:.1f} s")


def test_restore_refuses_what_is_not_a_backup_and_a_missing_stack(tmp_path, offline_bases):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    proc = iot("db.restore", "--file", str(junk), check=False)
    assert proc.returncode == 1 and "not a gzip tar archive" in proc.stderr, proc.stderr
    with tarfile.open(tmp_path / "other.tar.gz", "w:gz") as tar:
        tar.add(junk, arcname="something")
    proc = iot("db.restore", "--file", str(tmp_path / "other.tar.gz"), check=False)
    assert proc.returncode == 1 and "not an iot backup" in proc.stderr, proc.stderr
    proc = iot("db.backup", "--out", str(tmp_path / "x.tar.gz"), "--target", "compose", check=False)
    assert proc.returncode == 1 and "no running container of compose project iotbk-test" in proc.stderr, proc.stderr
    assert not (tmp_path / "x.tar.gz").exists()
