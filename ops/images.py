"""Images: the service images (`build`) and which image a stack runs (`reference`). The offline base images
(`images.bootstrap`: Debian, Python, InfluxDB from a Debian mirror) are ops/bases.py, re-exported here.

`reference`: the image a rendered stack runs for a name (ours or a base of the values' mode).

Service images: `build_image` (one image, through BuildKit: our Dockerfiles use `RUN --mount`), and
`build_device` (multi-platform with buildx, else the native platform). A CA bundle for a
TLS-intercepting proxy reaches pip as the BuildKit secret `cabundle`, never as a layer.

How BuildKit is reached (`detect_builder`), first that works:
  1. `docker buildx build` (a buildx plugin is installed),
  2. `DOCKER_BUILDKIT=1 docker build` with a CLI that still has BuildKit built in (< 23, e.g. Debian's
     /usr/bin/docker 20.10; CLIs 23+ need buildx for that),
  3. `docker compose build` of a one-service Compose file given on stdin (Compose talks to the
     daemon's BuildKit itself and passes `build.secrets`).
Every command runs through ops.run: printed (`$ CMD`) before it runs; with dry=True only printed (`would run: CMD`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ops import names
from ops import run as runner
from ops.errors import OpsError

Progress = Callable[[str], None]

ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = ROOT / "images"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SUITE = "bookworm"
DEFAULT_TAGS = {  # the values files pass their own; these are only the defaults
    "debian": "iot-base/debian:bookworm",
    "python": "iot-base/python:3.11-bookworm",
    "influxdb": "iot-base/influxdb:1.6.7",
}
DEVICE_PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"



class ImageError(OpsError):
    """A build step failed; the message says which and shows the end of its output."""


def say(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


# -- running commands --------------------------------------------------------------------------------
class ImageCommandError(runner.CommandError, ImageError):
    """A build command that failed (argv, status and its output's tail)."""


def run(cmd: Sequence[str], progress: Progress = say, *, env: Mapping[str, str] | None = None,
        input_text: str | None = None, dry: bool = False, quiet: bool = False,
        timeout: float | None = None) -> str:
    """ops.run.run with this module's defaults: the extra environment shown in the echo, the output
    streamed (quiet: captured, its end shown on failure), ImageCommandError on failure."""
    return runner.run(cmd, progress, env=env, show_env=True, input=input_text, dry=dry, stream=not quiet,
                      merge_stderr=True, timeout=timeout, error=ImageCommandError).stdout


def _ok(cmd: Sequence[str], timeout: float = 30) -> bool:
    try:  # a probe: only its exit status counts, never shown (plain subprocess, not ops.run)
        return subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def image_exists(tag: str) -> bool:
    return _ok(["docker", "image", "inspect", tag])


def image_size(tag: str) -> int:
    # a probe whose output is parsed, never shown: plain subprocess, not ops.run
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True,
                         text=True, check=True).stdout
    return int(out.strip())


# -- which image a stack runs -------------------------------------------------------------------------------
def reference(values: Mapping, name: str) -> str:
    """The image the stacks rendered from VALUES (ops.render.load_values) use for NAME. Pure.

    NAME is one of ours (values `images`: api, simulator, device, broker, web; `{registry}{repo}:{version}`,
    as ops/render.py names them) or a base of the values' `bases.mode` (debian, python, influxdb, grafana).
    A base the mode has not (offline Grafana) or an unknown NAME: ImageError naming the choices."""
    ours, mode = values["images"], values["bases"]["mode"]
    bases = values["bases"][mode]
    if name in ours:
        return names.our_images(values)[name]
    if name in bases:
        if bases[name] is None:
            raise ImageError(f"{name}: no image with {mode} bases (bases.{mode}.{name} is null: it has no "
                             f"{mode} source); --set bases.mode=online names the official one")
        return bases[name]
    raise ImageError(f"unknown image {name!r}: one of {', '.join([*ours, *bases])}")


# -- service images -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Builder:
    """How BuildKit is reached: 'buildx', 'buildkit-cli' (a docker CLI < 23) or 'compose'."""
    kind: str
    docker: str = "docker"  # the CLI binary ('buildkit-cli': the old one that has BuildKit built in)


@dataclass(frozen=True)
class BuildSpec:
    context: Path
    tag: str
    base_image: str | None = None
    version: str = "0.0.0-dev"
    revision: str = "unknown"
    created: str = ""
    secrets: Mapping[str, str] = field(default_factory=dict)  # id -> file on this host
    target: str | None = None
    platforms: Sequence[str] = ()
    extra_tags: Sequence[str] = ()
    source: str | None = None  # org.opencontainers.image.source (the Dockerfiles default to "unknown")
    no_cache: bool = False

    def build_args(self) -> dict[str, str]:
        args = {"VERSION": self.version, "REVISION": self.revision, "CREATED": self.created or now_rfc3339()}
        if self.base_image:
            args["BASE_IMAGE"] = self.base_image
        if self.source:
            args["SOURCE"] = self.source
        return args


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def git_source_url(root: Path = ROOT) -> str | None:
    """The repository's origin as an https URL (credentials dropped), or None without one."""
    try:  # a probe whose output is parsed, never shown: plain subprocess, not ops.run
        url = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True, text=True,
                             timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return normalize_source_url(url)


def normalize_source_url(url: str) -> str | None:
    url = url.strip()
    if not url:
        return None
    m = re.match(r"^(?:ssh://)?git@([^:/]+)[:/](.+?)(?:\.git)?$", url)
    if m:
        return f"https://{m.group(1)}/{m.group(2)}"
    m = re.match(r"^https?://(?:[^@/]+@)?(.+?)(?:\.git)?$", url)
    return f"https://{m.group(1)}" if m else None


def git_revision(root: Path = ROOT) -> str:
    """HEAD's commit (with -dirty when the tree has changes), or "unknown"."""
    try:  # probes whose output is parsed, never shown: plain subprocess, not ops.run
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (rev + ("-dirty" if dirty else "")) if rev else "unknown"


def _major(version: str) -> int | None:
    m = re.match(r"(\d+)\.", version.strip())
    return int(m.group(1)) if m else None


def detect_builder(which: Callable[[str], str | None] = shutil.which,
                   works: Callable[[Sequence[str]], bool] = _ok,
                   client_version: Callable[[str], str] | None = None) -> Builder:
    """The first way to BuildKit that works here (see the module's docstring)."""
    if which("docker") is None:
        raise ImageError("docker: command not found (on Debian/Ubuntu ops.engine.ensure_engine installs the engine)")
    if works(["docker", "buildx", "version"]):
        return Builder("buildx")
    client_version = client_version or _client_version
    # The docker on PATH first, then Debian's (docker.io installs it in /usr/bin; a newer CLI in
    # /usr/local/bin may shadow it). A missing binary reports no version.
    for cli in dict.fromkeys(filter(None, [which("docker"), "/usr/bin/docker"])):
        major = _major(client_version(cli))
        if major is not None and major < 23:
            return Builder("buildkit-cli", cli)
    if works(["docker", "compose", "version"]):
        return Builder("compose")
    raise ImageError("no way to BuildKit here: install the buildx plugin or the Compose v2 plugin "
                     "(ops.engine.ensure_compose does the latter)")


def _client_version(cli: str) -> str:
    try:  # a probe whose output is parsed, never shown: plain subprocess, not ops.run
        return subprocess.run([cli, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True,
                              timeout=20, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _builder_for(dry: bool) -> Builder:
    try:
        return detect_builder()  # read-only probes: fine in a dry run too
    except ImageError:
        if dry:
            return Builder("buildkit-cli")
        raise


def build_command(spec: BuildSpec, builder: Builder) -> tuple[list[str], dict[str, str], str | None]:
    """(argv, extra environment, stdin text) that build SPEC with BUILDER. Pure: no I/O."""
    args = spec.build_args()
    if builder.kind == "compose":
        return _compose_build(spec, args)
    if builder.kind == "buildx":
        cmd, env = ["docker", "buildx", "build"], {}
    elif builder.kind == "buildkit-cli":
        cmd, env = [builder.docker, "build"], {"DOCKER_BUILDKIT": "1"}
    else:
        raise ValueError(f"unknown builder {builder.kind!r}")
    cmd += ["--progress=plain"]
    if spec.no_cache:
        cmd.append("--no-cache")
    if spec.platforms:
        cmd += ["--platform", ",".join(spec.platforms)]
    if builder.kind == "buildx" and len(spec.platforms) <= 1:
        cmd.append("--load")  # into the engine's image store (multi-platform results go elsewhere)
    if spec.target:
        cmd += ["--target", spec.target]
    for key in sorted(args):
        cmd += ["--build-arg", f"{key}={args[key]}"]
    for sid in sorted(spec.secrets):
        cmd += ["--secret", f"id={sid},src={spec.secrets[sid]}"]
    for tag in (spec.tag, *spec.extra_tags):
        cmd += ["--tag", tag]
    cmd.append(str(spec.context))
    return cmd, env, None


def _compose_build(spec: BuildSpec, args: dict[str, str]) -> tuple[list[str], dict[str, str], str]:
    """A one-service Compose file (JSON is YAML) on stdin: Compose builds through the daemon's BuildKit."""
    build: dict = {"context": str(Path(spec.context).resolve()), "args": args, "tags": list(spec.extra_tags)}
    if spec.target:
        build["target"] = spec.target
    if spec.platforms:
        build["platforms"] = list(spec.platforms)
    if spec.secrets:
        build["secrets"] = sorted(spec.secrets)
    project: dict = {"name": "iot-build", "services": {"image": {"image": spec.tag, "build": build}}}
    if spec.secrets:
        project["secrets"] = {sid: {"file": str(Path(path).resolve())} for sid, path in spec.secrets.items()}
    if not build["tags"]:
        del build["tags"]
    cmd = ["docker", "compose", "--progress=plain", "--project-directory", str(Path(spec.context).resolve()),
           "-f", "-", "build", *(["--no-cache"] if spec.no_cache else []), "image"]
    return cmd, {"COMPOSE_BAKE": "false"}, json.dumps(project, indent=2, sort_keys=True)


def default_secrets(ca_bundle: str = HOST_CA_BUNDLE) -> dict[str, str]:
    """{"cabundle": host bundle} when the host has one (builds behind a TLS-intercepting proxy)."""
    return {"cabundle": ca_bundle} if os.path.isfile(ca_bundle) else {}


@dataclass(frozen=True)
class BuildResult:
    tag: str
    seconds: float
    output: str  # the build's log when quiet=True (else it went to the terminal)
    builder: str

    def cached_steps(self) -> list[str]:
        """Steps BuildKit took from its cache ('#8 [build 3/5] RUN …' followed by '#8 CACHED')."""
        steps: dict[str, str] = {}
        cached = []
        for line in self.output.splitlines():
            m = re.match(r"^#(\d+) (\[.*)$", line)
            if m:
                steps.setdefault(m.group(1), m.group(2))
            m = re.match(r"^#(\d+) CACHED$", line.strip())
            if m and m.group(1) in steps:
                cached.append(steps[m.group(1)])
        return cached


def build_image(context: Path | str, tag: str, base_image: str | None = None, version: str = "0.0.0-dev",
                revision: str = "unknown", secrets: Mapping[str, str] | None = None, *,
                created: str | None = None, target: str | None = None, platforms: Sequence[str] = (),
                extra_tags: Sequence[str] = (), source: str | None = None, no_cache: bool = False,
                builder: Builder | None = None, progress: Progress = say, dry: bool = False,
                quiet: bool = False) -> BuildResult:
    """Build CONTEXT's Dockerfile as TAG, through BuildKit.

    base_image: the BASE_IMAGE build arg (None: the Dockerfile's online default); version, revision
    (and created, default now) go into the OCI labels; secrets: {id: host file} as BuildKit secrets,
    None meaning default_secrets() (the host CA bundle as `cabundle` when there is one), {} none.
    The command is printed before it runs; dry=True only prints it."""
    spec = BuildSpec(Path(context), tag, base_image, version, revision, created or now_rfc3339(),
                     default_secrets() if secrets is None else dict(secrets), target, tuple(platforms),
                     tuple(extra_tags), source or git_source_url(), no_cache)
    builder = builder or _builder_for(dry)
    return _build(spec, builder, progress, dry, quiet)


def _build(spec: BuildSpec, builder: Builder, progress: Progress, dry: bool, quiet: bool,
           output_flag: str | None = None) -> BuildResult:
    cmd, env, stdin = build_command(spec, builder)
    if output_flag:
        cmd.insert(-1, output_flag)
    where = f" for {', '.join(spec.platforms)}" if spec.platforms else ""
    progress(f"{spec.tag}: building {spec.context}{where} on {spec.base_image or 'the default base'} ({builder.kind})")
    if stdin is not None:
        progress("compose file on stdin:\n" + stdin)
    started = time.monotonic()
    out = run(cmd, progress, env=env, input_text=stdin, dry=dry, quiet=quiet, timeout=3600)
    took = time.monotonic() - started
    if not dry:
        progress(f"{spec.tag}: built in {took:.1f} s")
    return BuildResult(spec.tag, took, out, builder.kind)


def device_platforms(builder: Builder, wanted: Sequence[str] = DEVICE_PLATFORMS,
                     progress: Progress = say) -> tuple[str, ...]:
    """All WANTED platforms with buildx; without it, say so and return () (the native platform)."""
    if builder.kind == "buildx":
        return tuple(wanted)
    progress(f"docker buildx is not installed: building the device image for the native platform only "
             f"(not {', '.join(wanted)}); install the buildx plugin for multi-platform builds")
    return ()


def build_device(context: Path | str, tag: str, base_image: str | None = None, version: str = "0.0.0-dev",
                 revision: str = "unknown", secrets: Mapping[str, str] | None = None, *,
                 platforms: Sequence[str] = DEVICE_PLATFORMS, push: bool = False, source: str | None = None,
                 no_cache: bool = False, builder: Builder | None = None, progress: Progress = say,
                 dry: bool = False, quiet: bool = False) -> list[BuildResult]:
    """The device image, for every platform in PLATFORMS when buildx is there, else the native one.

    With buildx and several platforms: push=True pushes the multi-platform image (TAG must name a
    registry); push=False builds every platform (the result stays in BuildKit's cache: the classic
    image store cannot hold a multi-platform image) and then loads the native one as TAG.
    Multi-platform needs a buildx builder that supports it (`docker buildx create --driver
    docker-container --use`, which pulls moby/buildkit) and QEMU binfmt for the RUN steps; an
    offline base only exists for the build host's platform: use the official base for this."""
    builder = builder or _builder_for(dry)
    chosen = device_platforms(builder, platforms, progress)
    common = dict(base_image=base_image, version=version, revision=revision,
                  secrets=default_secrets() if secrets is None else dict(secrets), source=source or git_source_url(),
                  no_cache=no_cache)
    results = []
    if len(chosen) > 1:
        spec = BuildSpec(Path(context), tag, created=now_rfc3339(), platforms=chosen, **common)
        results.append(_build(spec, builder, progress, dry, quiet, output_flag="--push" if push else None))
        if push:
            return results
    spec = BuildSpec(Path(context), tag, created=now_rfc3339(), **common)
    results.append(_build(spec, builder, progress, dry, quiet))
    return results


# The offline bases (ops/bases.py) stay reachable as images.X for the tasks and tests that use them. Looked up
# on first use: ops.bases imports this module, so `import ops.bases` first must not need them yet.
_FROM_BASES = {"bootstrap", "build_debian_base", "build_influxdb_image", "build_python_base", "debootstrap_command",
               "import_changes", "import_command", "overlay_rootfs", "sources_list", "tar_command", "trim_rootfs"}


def __getattr__(name: str):
    if name in _FROM_BASES:
        from ops import bases

        return getattr(bases, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
