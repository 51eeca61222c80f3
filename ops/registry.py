"""Publishing our images to a registry (`tag`, `push`): the tags, the plan, reaching the registry.

Tags: every image of an environment (api, simulator, device) is published as

- its version, from the values (`0.1.0`);
- `git-<sha7>` of the commit the image was **built from**: its OCI label
  `org.opencontainers.image.revision` (the checkout's HEAD only when the image has no such label).
  A build from a dirty tree (revision `<sha>-dirty`) is published as `git-<sha7>-dirty`, never as
  `git-<sha7>`: an immutable-looking sha tag must name exactly that commit's code. (A `-dirty` tag is
  mutable by nature: every dirty build of the same commit replaces it. CI builds clean trees.)
  No sha tag when the revision is unknown (not a git checkout);
- the current branch (`git symbolic-ref`, or GitHub Actions' GITHUB_HEAD_REF / GITHUB_REF_NAME on a
  detached checkout), made a valid Docker tag: runs of characters other than `[A-Za-z0-9_.-]` become
  `-` (`feature/x` -> `feature-x`), leading `.`/`-` are dropped, and a name longer than 128 is cut to
  119 characters plus `-` and 8 hex digits of its hash (two long branches never share a tag). A branch
  tag never looks like another kind of tag: `latest` (any case), a version (`1.2`, `v2-x`) or a
  `git-<sha>` becomes `branch-<name>`. No branch tag on a detached HEAD without those variables;
- never `latest`: a deployment names what it runs.

The local image tagged is the one `./iot build` made: `<registry><repo>:<version>` when it exists,
else `<repo>:<version>` (built without a registry, e.g. `./iot build --env test`).

`push` first checks that the registry answers (a closed port fails in a second with one line naming
the registry and how to start the local one), then `docker tag`s and `docker push`es every tag. Every
command is printed before it runs; dry=True only prints them.

The local registry to push to (`registry.start`, `registry.stop`) is ops/cluster/registry.py's container.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import requests

from ops import http_client, names
from ops import run as runner
from ops.errors import OpsError

Progress = Callable[[str], None]

ROOT = Path(__file__).resolve().parent.parent
REVISION_LABEL = "org.opencontainers.image.revision"
TAG_MAX = 128
API_HEADER = "Docker-Distribution-Api-Version"

_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_NOT_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_REVISION_RE = re.compile(r"([0-9a-f]{7,64})(-dirty)?")
_SHA_TAG_RE = re.compile(r"git-[0-9a-f]{7,64}(-dirty)?")
_NOISE = re.compile(r": (Preparing|Waiting)$")  # docker push's per-layer chatter without a tty
_VERSION_LIKE_RE = re.compile(r"v?[0-9]+(\.[0-9]+)*([-+._].*)?", re.IGNORECASE)


class RegistryError(OpsError):
    """Anything that stops tag / push / the local registry; str() is the one line to show."""


class RegistryCommandError(runner.CommandError, RegistryError):
    """A tag or push command that failed (argv, status and its output's tail)."""


def say(message: str) -> None:
    print(f"registry: {message}", file=sys.stderr, flush=True)


# -- tags ---------------------------------------------------------------------------------------------
def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.fullmatch(tag))


def sanitize_tag(text: str) -> str | None:
    """TEXT as a valid Docker tag (see the module's docstring), or None when nothing is left."""
    tag = _NOT_TAG_CHARS.sub("-", text).lstrip(".-")
    if not tag:
        return None
    if len(tag) > TAG_MAX:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
        tag = f"{tag[:TAG_MAX - 9]}-{digest}"
    return tag


def branch_tag(branch: str | None) -> str | None:
    """The tag of a branch name, or None (no branch, detached HEAD, nothing valid left)."""
    if not branch or branch.strip() in ("", "HEAD"):
        return None
    branch = branch.strip().removeprefix("refs/heads/")
    tag = sanitize_tag(branch)
    if tag is None:
        return None
    if tag.lower() == "latest" or _SHA_TAG_RE.fullmatch(tag) or _VERSION_LIKE_RE.fullmatch(tag):
        tag = sanitize_tag(f"branch-{tag}")
    return tag


def revision_tag(revision: str | None) -> str | None:
    """`git-<sha7>` for a clean revision, `git-<sha7>-dirty` for a dirty one, None when unknown."""
    m = _REVISION_RE.fullmatch((revision or "").strip().lower())
    if not m:
        return None
    return f"git-{m.group(1)[:7]}" + ("-dirty" if m.group(2) else "")


class _HasImages(Protocol):
    images: dict[str, str]


def split_reference(ref: str) -> tuple[str, str]:
    """`127.0.0.1:5000/iot/api:0.1.0` -> (`127.0.0.1:5000/iot/api`, `0.1.0`)."""
    repository, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag or not repository:
        raise RegistryError(f"image {ref!r} has no tag (expected name:tag)")
    return repository, tag


def image_tags(result: _HasImages, revision: str | Mapping[str, str] | None,
               branch: str | None) -> dict[str, list[str]]:
    """For each of our images (RESULT.images: name -> full reference), the tags to publish, in order:
    version, git sha, branch (see the module's docstring). REVISION: one for all images, or per image."""
    out: dict[str, list[str]] = {}
    btag = branch_tag(branch)
    for name, ref in result.images.items():
        _, version = split_reference(ref)
        if version.lower() == "latest" or not is_valid_tag(version):
            raise RegistryError(f"image {name}: version {version!r} cannot be published (a pinned version, never latest)")
        rev = revision.get(name) if isinstance(revision, Mapping) else revision
        tags = [version]
        for extra in (revision_tag(rev), btag):
            if extra and extra not in tags:
                tags.append(extra)
        out[name] = tags
    return out


# -- git ---------------------------------------------------------------------------------------------
def git_branch(root: Path = ROOT, environ: Mapping[str, str] | None = None) -> str | None:
    """The checkout's branch; on a detached HEAD, GitHub Actions' branch variables; else None."""
    environ = os.environ if environ is None else environ
    try:  # a probe whose output is parsed, never shown: plain subprocess, not ops.run
        proc = subprocess.run(["git", "-C", str(root), "symbolic-ref", "--short", "-q", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    if environ.get("GITHUB_HEAD_REF"):  # pull requests: the source branch
        return environ["GITHUB_HEAD_REF"]
    if environ.get("GITHUB_REF_TYPE") == "branch" and environ.get("GITHUB_REF_NAME"):
        return environ["GITHUB_REF_NAME"]
    return None


def checkout_revision() -> str:
    from . import images

    return images.git_revision()


# -- running commands ----------------------------------------------------------------------------------
def run(cmd: Sequence[str], progress: Progress = say, *, dry: bool = False, timeout: float = 900,
        echo_output: bool = True) -> str:
    """ops.run.run with this module's defaults: push's output streamed indented (without its per-layer
    chatter), RegistryCommandError on failure."""
    proc = runner.run(cmd, progress, dry=dry, timeout=timeout, stream=echo_output, merge_stderr=True, hide=_NOISE,
                      error=RegistryCommandError)
    return proc.stdout.rstrip("\n")


def inspect_image(ref: str) -> dict | None:
    """`docker image inspect REF` as {id, labels}, or None when there is no such image."""
    try:  # a probe whose output is parsed, never shown: plain subprocess, not ops.run
        proc = subprocess.run(["docker", "image", "inspect", "--format", "{{json .Id}} {{json .Config.Labels}}", ref],
                              capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise RegistryError("docker: command not found (install the engine: ./iot engine)") from None
    except subprocess.TimeoutExpired:
        raise RegistryError("`docker image inspect` did not answer within 30 s: is the engine running? (./iot engine)") from None
    if proc.returncode != 0:
        if "no such image" in proc.stderr.lower():
            return None
        raise RegistryError(f"`docker image inspect {ref}` failed: {proc.stderr.strip() or 'no output'} "
                            "(is the engine running? ./iot engine)")
    image_id, _, labels = proc.stdout.strip().partition(" ")
    return {"id": json.loads(image_id), "labels": json.loads(labels) or {}}


# -- the plan: what is tagged and pushed ---------------------------------------------------------------
@dataclass(frozen=True)
class ImagePlan:
    name: str                 # api, simulator, device
    source: str               # the local image the tags point to
    repository: str           # <registry><repo>, e.g. 127.0.0.1:5000/iot/api
    tags: tuple[str, ...]     # version, git sha, branch
    revision: str             # what the sha tag was made from
    image_id: str | None = None

    @property
    def targets(self) -> list[str]:
        return [f"{self.repository}:{tag}" for tag in self.tags]


@dataclass
class PushResult:
    pushed: dict[str, str] = field(default_factory=dict)   # reference -> manifest digest ("" unknown)


def normalize_prefix(registry: str) -> str:
    """`127.0.0.1:5000` -> `127.0.0.1:5000/` (values keep the prefix form); "" stays ""."""
    registry = registry.strip()
    return registry if not registry or registry.endswith("/") else registry + "/"


@dataclass(frozen=True)
class _Images:
    images: dict[str, str]


def publish_plan(env: str, overrides: Mapping | None = None, *, dry: bool = False, check: bool = False,
                 **plan_options) -> tuple[list[ImagePlan], str]:
    """Which local image of ENV gets which tags, and the registry prefix (`tag`, `push`): from the values
    alone, so publishing never writes build/ENV or secrets/ENV. CHECK: first that the registry answers
    (the likeliest failure), unless DRY."""
    from ops import values as values_mod

    values = values_mod.load_values(env, overrides or {})
    prefix = values["registry"]
    if check and not dry:
        check_registry(prefix)
    return plan(_Images(names.our_images(values)), prefix, dry=dry, **plan_options), prefix


def plan(result: _HasImages, registry: str, *, revision: str | None = None, branch: str | None = None,
         use_git_branch: bool = True, progress: Progress = say, dry: bool = False,
         inspect: Callable[[str], dict | None] = inspect_image,
         head: Callable[[], str] = checkout_revision) -> list[ImagePlan]:
    """Which local image gets which tags. REGISTRY: the values' prefix ("" or `host[:port]/…/`).

    REVISION overrides the images' own labels; BRANCH the checkout's branch."""
    registry = normalize_prefix(registry)
    branch = branch if branch is not None else (git_branch() if use_git_branch else None)
    current = head()
    sources: dict[str, tuple[str, dict | None]] = {}
    missing = []
    for name, ref in result.images.items():
        local = ref[len(registry):] if registry and ref.startswith(registry) else ref
        found = None
        for candidate in dict.fromkeys([ref, local]):
            info = inspect(candidate)
            if info is not None:
                found = (candidate, info)
                break
        if found is None:
            if not dry:
                missing.append(local)
            found = (local, None)
        sources[name] = found
    if missing:
        raise RegistryError(f"not built here: {', '.join(missing)}: build first (./iot build --env ENV, same --set)")

    revisions: dict[str, str] = {}
    for name, (source, info) in sources.items():
        labelled = ((info or {}).get("labels") or {}).get(REVISION_LABEL)
        if revision is not None:
            revisions[name] = revision
        elif labelled and revision_tag(labelled):
            revisions[name] = labelled
            if revision_tag(current) and labelled.split("-")[0] != current.split("-")[0]:
                progress(f"note: {source} was built from {labelled[:12]}, the checkout is at {current[:12]}: "
                         f"its sha tag is {revision_tag(labelled)} (rebuild to publish the checkout)")
        else:
            revisions[name] = current
    tags = image_tags(result, revisions, branch)
    plans = []
    for name, ref in result.images.items():
        repository, _ = split_reference(ref)
        source, info = sources[name]
        plans.append(ImagePlan(name=name, source=source, repository=repository, tags=tuple(tags[name]),
                               revision=revisions[name], image_id=(info or {}).get("id")))
    if dry and any(info is None for _, info in sources.values()):
        progress("note: some images are not built yet (dry run: shown as if they were)")
    if branch is None:
        progress("note: no branch tag (detached HEAD and no GITHUB_HEAD_REF / GITHUB_REF_NAME)")
    elif branch_tag(branch) is None:
        progress(f"note: no branch tag (branch {branch!r} has no character a tag allows)")
    return plans


def tag(plans: Sequence[ImagePlan], progress: Progress = say, dry: bool = False) -> list[str]:
    """`docker tag SOURCE TARGET` for every tag of every plan. Returns the references made."""
    made = []
    for p in plans:
        progress(f"{p.name}: {p.source} ({(p.image_id or 'not built')[:19]}) -> {', '.join(p.tags)}")
        for target in p.targets:
            if target != p.source:
                run(["docker", "tag", p.source, target], progress, dry=dry, timeout=60)
            made.append(target)
    return made


def push(plans: Sequence[ImagePlan], registry: str, progress: Progress = say, dry: bool = False,
         timeout: float = 1800) -> PushResult:
    """Check REGISTRY answers, tag, then `docker push` every tag. Returns reference -> digest."""
    registry = normalize_prefix(registry)
    if not dry:
        check_registry(registry)
    else:  # no registry stops a dry run where it stops the real one
        progress(f"would check that {require_registry(registry)} answers")
    tag(plans, progress, dry=dry)
    result = PushResult()
    for p in plans:
        for target in p.targets:
            out = run(["docker", "push", target], progress, dry=dry, timeout=timeout)
            m = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
            result.pushed[target] = m.group(1) if m else ""
    if not dry:
        progress(f"pushed {len(result.pushed)} tags of {len(plans)} images to {registry_host(registry)}")
    return result


# -- reaching a registry -----------------------------------------------------------------------------
def registry_host(registry: str) -> str:
    """`127.0.0.1:5000/team/` -> `127.0.0.1:5000`."""
    return normalize_prefix(registry).split("/", 1)[0]


def _host_port(host: str) -> tuple[str, int | None]:
    if host.startswith("["):  # [::1]:5000
        addr, _, rest = host[1:].partition("]")
        return addr, int(rest[1:]) if rest.startswith(":") else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return name, int(port)
    return host, None


def is_loopback(host: str) -> bool:
    name, _ = _host_port(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def require_registry(registry: str) -> str:
    """REGISTRY's host; RegistryError when there is none (an empty `registry` value: nowhere to push)."""
    host = registry_host(registry)
    if not host:
        raise RegistryError("no registry to push to: this environment's `registry` value is empty; pass "
                            "--registry 127.0.0.1:5000/ (a local one: ./iot registry.start) or set it in stacks/values/")
    return host


def check_registry(registry: str, timeout: float = 3.0) -> None:
    """RegistryError unless REGISTRY's host accepts connections (and, on loopback, speaks /v2/)."""
    host = require_registry(registry)
    name, port = _host_port(host)
    loopback = is_loopback(host)
    if loopback and port:
        hint = f"start the local one with `./iot registry.start --port {port}`"
    elif loopback:
        hint = "give its port (e.g. --registry 127.0.0.1:5000/; a local one: ./iot registry.start)"
    else:
        hint = "check the address and that the registry runs"
    try:
        with socket.create_connection((name, port or 443), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__.lower()
        raise RegistryError(f"registry {host} is unreachable ({reason}): {hint}") from None
    if loopback:  # plain http, as Docker uses for loopback registries
        url = f"http://{host}/v2/"
        try:  # any status is an answer (401: a registry that wants a login); only its header counts
            headers = http_client.request("GET", url, timeout=timeout).headers
        except requests.RequestException as exc:
            why = http_client.reason(exc)
            raise RegistryError(f"registry {host} accepts connections but {url} fails ({why}): {hint}") from None
        if not headers.get(API_HEADER):
            raise RegistryError(f"{host} answers but is not a Docker registry (no {API_HEADER} header on {url})")


def api_get(registry: str, path: str, timeout: float = 10.0) -> dict:
    """GET http://HOST/v2/PATH of a (loopback, plain http) registry, as JSON."""
    url = f"http://{registry_host(registry)}/v2/{path.lstrip('/')}"
    try:
        resp = http_client.request("GET", url, timeout=timeout)
        resp.raise_for_status()
        return resp.json()
    except requests.HTTPError as exc:
        raise RegistryError(f"GET {url} failed: HTTP {exc.response.status_code}") from None
    except (requests.RequestException, ValueError) as exc:
        raise RegistryError(f"GET {url} failed: {http_client.reason(exc)}") from None


def catalog(registry: str) -> list[str]:
    return list(api_get(registry, "_catalog").get("repositories") or [])


def list_tags(registry: str, repository: str) -> list[str]:
    return sorted(api_get(registry, f"{repository}/tags/list").get("tags") or [])

