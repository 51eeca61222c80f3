"""Fixtures for the end-to-end layer: a real Docker engine, the offline base images, clean-up by label.

- `docker_engine` (session): `docker info` must work. Without an engine the e2e tests are skipped with
  the command to run, unless IOT_REQUIRE_DOCKER=1 (CI), where that is a failure.
- `offline_bases` (session): `ops.images.bootstrap()` with the default tags (each reused if present).
- `run_label` (session): a label (`iot.test.run=<id>`) for everything the e2e tests create; whatever
  still carries it at the end (containers with their anonymous volumes, networks, volumes) is removed,
  failures included.
- `docker` (function): run a docker command, return its stdout, fail the test with its stderr.

Side by side (`./iot test` runs two pytest-xdist workers): tests/worker_groups.py says which e2e modules may
run beside the others; every other one, a new one included, runs in order with the rest of the chain.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from ops import engine, images, render

ROOT = Path(__file__).resolve().parents[2]

# Two workers must not debootstrap the same base, nor make env test's secrets, at the same time.
BASES_LOCK = Path("/tmp/iot-e2e-bases.lock")


def docker_cmd(*args: str, check: bool = True, timeout: float = 300, input_text: str | None = None) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, input=input_text,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


@pytest.fixture(scope="session")
def docker_engine():
    if not engine.docker_works():
        message = ("no Docker engine answers `docker info`; install and start one with "
                   "`.venv/bin/python -c 'from ops import engine; engine.ensure_engine()'`")
        if os.environ.get("IOT_REQUIRE_DOCKER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return True


@pytest.fixture(scope="session")
def run_label(docker_engine):
    label = f"iot.test.run=e2e-{uuid.uuid4().hex[:10]}"
    yield label
    flt = f"label={label}"
    containers = docker_cmd("ps", "-aq", "--filter", flt, check=False).split()
    if containers:
        docker_cmd("rm", "-f", "-v", *containers, check=False)
    networks = docker_cmd("network", "ls", "-q", "--filter", flt, check=False).split()
    if networks:
        docker_cmd("network", "rm", *networks, check=False)
    volumes = docker_cmd("volume", "ls", "-q", "--filter", flt, check=False).split()
    if volumes:
        docker_cmd("volume", "rm", "-f", *volumes, check=False)


@pytest.fixture(scope="session")
def offline_bases(docker_engine):
    """The three offline bases, built from the Debian mirror when missing (~40 s), else reused; and the
    secrets of env test, which every e2e module uses (secrets/test), made once."""
    tags = dict(images.DEFAULT_TAGS)
    with open(BASES_LOCK, "a") as lock, tempfile.TemporaryDirectory(prefix="iot-e2e-") as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        times = images.bootstrap(debian_tag=tags["debian"], python_tag=tags["python"], influxdb_tag=tags["influxdb"],
                                 progress=lambda m: print(f"bootstrap: {m}"))
        render.render("test", out_dir=Path(tmp))
    for tag, took in times.items():
        print(f"bootstrap: {tag}: {'reused' if took is None else f'built in {took:.1f} s'}")
    return tags


@pytest.fixture
def docker():
    return docker_cmd
