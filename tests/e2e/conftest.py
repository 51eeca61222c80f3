"""Fixtures for the end-to-end layer: a real Docker engine, the offline base images, clean-up by label.

- `docker_engine` (session): `docker info` must work. Without an engine the e2e tests are skipped with
  the command to run, unless IOT_REQUIRE_DOCKER=1 (CI), where that is a failure.
- `offline_bases` (session): `ops.images.bootstrap()` with the default tags (each reused if present).
- `run_label` (session): a label (`iot.test.run=<id>`) for everything the e2e tests create; whatever
  still carries it at the end (containers with their anonymous volumes, networks, volumes) is removed,
  failures included.
- `docker` (function): run a docker command, return its stdout, fail the test with its stderr.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ops import engine, images  # noqa: E402


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
    """The three offline bases, built from the Debian mirror when missing (~40 s), else reused."""
    tags = dict(images.DEFAULT_TAGS)
    times = images.bootstrap(debian_tag=tags["debian"], python_tag=tags["python"], influxdb_tag=tags["influxdb"],
                             progress=lambda m: print(f"bootstrap: {m}"))
    for tag, took in times.items():
        print(f"bootstrap: {tag}: {'reused' if took is None else f'built in {took:.1f} s'}")
    return tags


@pytest.fixture
def docker():
    return docker_cmd
