"""The offline base images, for machines that cannot pull from Docker Hub (our CI, air-gapped sites),
built from a Debian mirror only (`./iot images.bootstrap`, and `build` when one is missing):

- `build_debian_base`: debootstrap --variant=minbase, trimmed (apt lists, docs, man pages,
  translations), `docker import`ed with ENV and CMD. Config from images/debian/rootfs/ is laid over it.
- `build_python_base`: images/python/Dockerfile (Debian's python3 + python3-venv + ca-certificates + tini).
- `build_influxdb_image`: images/influxdb/Dockerfile (Debian's influxdb 1.x, non-root, volume, healthcheck).
- `bootstrap`: the three in order, each skipped when its tag exists (unless force=True).

Every command is printed before it runs (ops.images.run, i.e. ops.run); with dry=True it is only printed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ops import run as ops_run
from ops.images import (
    DEFAULT_MIRROR,
    DEFAULT_SUITE,
    DEFAULT_TAGS,
    IMAGES_DIR,
    PATH_ENV,
    ImageError,
    Progress,
    git_source_url,
    image_exists,
    image_size,
    run,
    say,
)

# Removed from the debootstrapped tree (globs relative to the root). The dpkg/apt config laid over it
# (images/debian/rootfs) keeps later installs just as small.
TRIM_GLOBS = (
    "var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
    "var/cache/apt/archives/partial/*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old",
    "usr/share/man/*", "usr/share/info/*", "usr/share/lintian/*", "usr/share/linda/*",
    "usr/share/locale/*", "var/log/*", "tmp/*", "var/tmp/*", "root/.bash_history",
)
KEEP_IN_TRIM = ("usr/share/locale/locale.alias",)


# -- the Debian base --------------------------------------------------------------------------------------
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
            _echo_pipe(progress, tar_command(rootfs), import_command(tag, changes), dry=True)
            return 0.0
        before = _tree_size(rootfs)
        removed = trim_rootfs(rootfs)
        overlay_rootfs(rootfs, mirror, suite)
        progress(f"{tag}: debootstrap took {t_boot:.1f} s; trimmed {removed / 1e6:.0f} MB of "
                 f"{before / 1e6:.0f} MB; importing")
        tar_cmd, imp_cmd = tar_command(rootfs), import_command(tag, changes)
        _echo_pipe(progress, tar_cmd, imp_cmd, dry=False)
        # a pipe of two commands, which ops.run does not do: plain subprocess, echoed and recorded as ops.run would
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


def _echo_pipe(progress: Progress, first: Sequence[str], second: Sequence[str], dry: bool) -> None:
    """`$ A | B` (`would run: A | B` in a dry run), both recorded for IOT_RECORD_COMMANDS as ops.run does."""
    progress(("would run: " if dry else "$ ") + f"{ops_run.shown(first)} | {ops_run.shown(second)}")
    ops_run.record(first)
    ops_run.record(second)


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


