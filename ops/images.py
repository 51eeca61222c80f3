"""Images: the offline base images (`images.bootstrap`) and the service images (`build`).

Offline bases, for machines that cannot pull from Docker Hub (our CI, air-gapped sites), built from a
Debian mirror only:

- `build_debian_base`: debootstrap --variant=minbase, trimmed (apt lists, docs, man pages,
  translations), `docker import`ed with ENV and CMD. Config from images/debian/rootfs/ is laid over it.
- `build_python_base`: images/python/Dockerfile (Debian's python3 + python3-venv + ca-certificates + tini).
- `build_influxdb_image`: images/influxdb/Dockerfile (Debian's influxdb 1.x, non-root, volume, healthcheck).
- `bootstrap`: the three in order, each skipped when its tag exists (unless force=True).

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
Every command is printed before it runs; with dry=True it is only printed.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ops import names
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

# Removed from the debootstrapped tree (globs relative to the root). The dpkg/apt config laid over it
# (images/debian/rootfs) keeps later installs just as small.
TRIM_GLOBS = (
    "var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
    "var/cache/apt/archives/partial/*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old",
    "usr/share/man/*", "usr/share/info/*", "usr/share/lintian/*", "usr/share/linda/*",
    "usr/share/locale/*", "var/log/*", "tmp/*", "var/tmp/*", "root/.bash_history",
)
KEEP_IN_TRIM = ("usr/share/locale/locale.alias",)


class ImageError(OpsError):
    """A build step failed; the message says which and shows the end of its output."""


def say(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


# -- running commands --------------------------------------------------------------------------------
def _shown(cmd: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
    return prefix + shlex.join(cmd)


def run(cmd: Sequence[str], progress: Progress = say, *, env: Mapping[str, str] | None = None,
        input_text: str | None = None, dry: bool = False, quiet: bool = False,
        timeout: float | None = None) -> str:
    """Print the command, run it (unless dry). quiet: capture the output, show its end on failure."""
    progress(f"$ {_shown(cmd, env)}")
    if dry:
        return ""
    full_env = dict(os.environ, **env) if env else None
    try:
        proc = subprocess.run(list(cmd), env=full_env, input=input_text, text=True, timeout=timeout, check=False,
                              stdout=subprocess.PIPE if quiet else None,
                              stderr=subprocess.STDOUT if quiet else None)
    except FileNotFoundError:
        raise ImageError(f"{cmd[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise ImageError(f"`{_shown(cmd, env)}` did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").strip().splitlines()[-25:])
        raise ImageError(f"`{_shown(cmd, env)}` failed (exit {proc.returncode})" + (f":\n{tail}" if tail else ""))
    return proc.stdout or ""


def _ok(cmd: Sequence[str], timeout: float = 30) -> bool:
    try:
        return subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def image_exists(tag: str) -> bool:
    return _ok(["docker", "image", "inspect", tag])


def image_size(tag: str) -> int:
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True,
                         text=True, check=True).stdout
    return int(out.strip())


# -- offline bases --------------------------------------------------------------------------------------
def sources_list(mirror: str = DEFAULT_MIRROR, suite: str = DEFAULT_SUITE) -> str:
    """apt sources for the image: the suite, its updates, and security updates (same host, plain http)."""
    mirror = mirror.rstrip("/")
    lines = [f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main"]
    if mirror.endswith("/debian"):
        lines.append(f"deb {mirror}-security {suite}-security main")
    return "\n".join(lines) + "\n"


def debootstrap_command(rootfs: Path | str, mirror: str = DEFAULT_MIRROR, suite: str = DEFAULT_SUITE) -> list[str]:
    return ["debootstrap", "--variant=minbase", suite, str(rootfs), mirror]


def import_changes(suite: str, created: str, title: str | None = None) -> list[str]:
    """`docker import --change` instructions: what a Dockerfile would have said."""
    labels = {
        "org.opencontainers.image.title": title or f"iot-base/debian:{suite}",
        "org.opencontainers.image.description": f"Debian {suite} minbase, debootstrapped (offline base)",
        "org.opencontainers.image.created": created,
    }
    source = git_source_url()
    if source:
        labels["org.opencontainers.image.source"] = source
    changes = [f"ENV PATH={PATH_ENV}", "ENV LANG=C.UTF-8", 'CMD ["bash"]']
    changes += [f"LABEL {k}={json.dumps(v)}" for k, v in labels.items()]
    return changes


def import_command(tag: str, changes: Sequence[str]) -> list[str]:
    cmd = ["docker", "import"]
    for change in changes:
        cmd += ["--change", change]
    return [*cmd, "-", tag]


def tar_command(rootfs: Path | str) -> list[str]:
    return ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs),
            "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "-c", "."]


def trim_rootfs(rootfs: Path) -> int:
    """Delete TRIM_GLOBS (but copyright files) and host leftovers; returns the bytes removed."""
    removed = 0
    keep = {rootfs / k for k in KEEP_IN_TRIM}
    for pattern in TRIM_GLOBS:
        for path in rootfs.glob(pattern):
            if path in keep:
                continue
            removed += _tree_size(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    doc = rootfs / "usr/share/doc"
    if doc.is_dir():
        for path in doc.rglob("*"):
            if path.is_file() and path.name != "copyright" and not path.is_symlink():
                removed += path.stat().st_size
                path.unlink()
    # Docker provides these at run time; debootstrap copied the build host's.
    for name in ("etc/resolv.conf", "etc/hostname"):
        p = rootfs / name
        if p.exists() or p.is_symlink():
            p.unlink()
    (rootfs / "etc/machine-id").write_text("")
    return removed


def _tree_size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def overlay_rootfs(rootfs: Path, mirror: str, suite: str) -> None:
    """Lay images/debian/rootfs over the tree (dpkg/apt config, policy-rc.d) and write sources.list."""
    src = IMAGES_DIR / "debian" / "rootfs"
    for path in sorted(src.rglob("*")):
        if path.is_file():
            dest = rootfs / path.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    (rootfs / "etc/apt/sources.list").write_text(sources_list(mirror, suite))


def build_debian_base(tag: str = DEFAULT_TAGS["debian"], *, mirror: str = DEFAULT_MIRROR, suite: str = DEFAULT_SUITE,
                      force: bool = False, progress: Progress = say, dry: bool = False,
                      workdir: Path | None = None) -> float | None:
    """debootstrap a minbase tree, trim it, `docker import` it as TAG. Returns seconds (None: skipped)."""
    if not force and image_exists(tag):  # a read-only probe: dry runs too
        progress(f"{tag}: present, skipped (force=True rebuilds it)")
        return None
    if not dry:
        if os.geteuid() != 0:
            raise ImageError("debootstrap needs root: run `invoke images.bootstrap` as root (or with sudo)")
        _ensure_debootstrap(progress)
    started = time.monotonic()
    parent = workdir or Path("/var/tmp")
    tmp = parent / "iot-debootstrap-XXXX" if dry else Path(tempfile.mkdtemp(prefix="iot-debootstrap-", dir=parent))
    rootfs = tmp / "rootfs"
    try:
        progress(f"{tag}: debootstrap {suite} from {mirror} (minbase; ~30 s)")
        run(debootstrap_command(rootfs, mirror, suite), progress, dry=dry, quiet=True, timeout=1800)
        t_boot = time.monotonic() - started
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        changes = import_changes(suite, created, title=tag)
        if dry:
            progress(f"{tag}: trim apt lists, docs, man pages, translations; overlay {IMAGES_DIR / 'debian/rootfs'}")
            progress(f"$ {shlex.join(tar_command(rootfs))} | {shlex.join(import_command(tag, changes))}")
            return 0.0
        before = _tree_size(rootfs)
        removed = trim_rootfs(rootfs)
        overlay_rootfs(rootfs, mirror, suite)
        progress(f"{tag}: debootstrap took {t_boot:.1f} s; trimmed {removed / 1e6:.0f} MB of "
                 f"{before / 1e6:.0f} MB; importing")
        tar_cmd, imp_cmd = tar_command(rootfs), import_command(tag, changes)
        progress(f"$ {shlex.join(tar_cmd)} | {shlex.join(imp_cmd)}")
        tar = subprocess.Popen(tar_cmd, stdout=subprocess.PIPE)
        imp = subprocess.run(imp_cmd, stdin=tar.stdout, capture_output=True, text=True, check=False)
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise ImageError(f"{tag}: tar | docker import failed: {imp.stderr.strip()}")
    finally:
        if not dry:
            shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - started
    progress(f"{tag}: built in {took:.1f} s ({image_size(tag) / 1e6:.0f} MB)")
    return took


def _ensure_debootstrap(progress: Progress) -> None:
    from . import engine

    engine.ensure_debian_packages(["debootstrap"], progress, what="debootstrap",
                                  check=lambda: shutil.which("debootstrap") is not None)


def build_python_base(tag: str = DEFAULT_TAGS["python"], debian_tag: str = DEFAULT_TAGS["debian"], *,
                      force: bool = False, progress: Progress = say, dry: bool = False) -> float | None:
    return _build_on_debian("python", tag, debian_tag, force, progress, dry)


def build_influxdb_image(tag: str = DEFAULT_TAGS["influxdb"], debian_tag: str = DEFAULT_TAGS["debian"], *,
                         force: bool = False, progress: Progress = say, dry: bool = False) -> float | None:
    return _build_on_debian("influxdb", tag, debian_tag, force, progress, dry)


def _build_on_debian(name: str, tag: str, debian_tag: str, force: bool, progress: Progress, dry: bool) -> float | None:
    if not force and image_exists(tag):  # a read-only probe: dry runs too
        progress(f"{tag}: present, skipped (force=True rebuilds it)")
        return None
    progress(f"{tag}: building from {IMAGES_DIR / name} on {debian_tag} (apt from the Debian mirror)")
    started = time.monotonic()
    # No RUN --mount in these Dockerfiles: the classic builder is enough and needs no BuildKit.
    cmd = ["docker", "build", "--build-arg", f"DEBIAN_IMAGE={debian_tag}", "--tag", tag, str(IMAGES_DIR / name)]
    run(cmd, progress, env={"DOCKER_BUILDKIT": "0"}, dry=dry, quiet=True, timeout=1800)
    took = time.monotonic() - started
    if not dry:
        progress(f"{tag}: built in {took:.1f} s ({image_size(tag) / 1e6:.0f} MB)")
    return took


def bootstrap(*, debian_tag: str = DEFAULT_TAGS["debian"], python_tag: str = DEFAULT_TAGS["python"],
              influxdb_tag: str = DEFAULT_TAGS["influxdb"], mirror: str = DEFAULT_MIRROR,
              suite: str = DEFAULT_SUITE, force: bool = False, progress: Progress = say,
              dry: bool = False) -> dict[str, float | None]:
    """Build the three offline bases (Debian, Python, InfluxDB). Returns seconds per image (None: skipped)."""
    times = {debian_tag: build_debian_base(debian_tag, mirror=mirror, suite=suite, force=force, progress=progress, dry=dry)}
    # a rebuilt Debian base makes the images on it stale
    force_children = force or times[debian_tag] is not None
    times[python_tag] = build_python_base(python_tag, debian_tag, force=force_children, progress=progress, dry=dry)
    times[influxdb_tag] = build_influxdb_image(influxdb_tag, debian_tag, force=force_children, progress=progress, dry=dry)
    return times


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
    try:
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
    try:
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
    try:
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
