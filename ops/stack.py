"""A rendered environment and the `docker compose` command lines run on it, built in one place.

`prepare()` is what `up`, `build` and `autotest` share: make sure an engine and Compose are there,
choose the base images (online unless Docker Hub cannot be reached, then the offline bases, built
from a Debian mirror when missing), and render the environment's files. Secrets reach Compose through
the environment of the command (never its command line, never a rendered file); `echo` shows only
the command.
"""
from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ops import engine, http_client, images, render, secrets

ROOT = Path(__file__).resolve().parent.parent
Progress = Callable[[str], None]


@dataclass
class Stack:
    result: render.RenderResult

    @property
    def env(self) -> str:
        return self.result.env

    def file(self, target: str) -> Path:
        return self.result.files[target]

    def compose(self, *args: str, target: str = "compose.yaml", profiles: tuple[str, ...] = ()) -> str:
        """`docker compose -f FILE [--profile P] ARGS` for one of the rendered files."""
        cmd = ["docker", "compose", "-f", str(self.file(target))]
        for profile in profiles:
            cmd += ["--profile", profile]
        return shlex.join(cmd + list(args))

    def run_env(self) -> dict[str, str]:
        """Environment for compose commands: the secrets (Compose copies them into the containers) and
        the build metadata of the OCI labels. Values only; never printed."""
        return {
            **secrets.compose_environment(self.result.secrets),
            "IOT_REVISION": images.git_revision(),
            "IOT_CREATED": images.now_rfc3339(),
            "DOCKER_BUILDKIT": "1",
        }


def choose_bases(env: str, overrides: dict, progress: Progress) -> dict:
    """Use the offline bases when the values ask for online ones that cannot be pulled here.

    A mode given as an override (`--set bases.mode=online`) is what the user asked for: it is kept, with
    a note when Docker Hub cannot be reached (the official images must then be here already)."""
    values = render.load_values(env, overrides)
    if values["bases"]["mode"] != "online" or engine.registry_reachable():
        return overrides
    if "bases.mode" in overrides:
        progress("note: bases.mode=online as asked, although Docker Hub cannot be reached: the official "
                 "images must already be on this engine")
        return overrides
    progress("Docker Hub cannot be reached: using the offline base images (built from a Debian mirror)")
    return {**overrides, "bases.mode": "offline"}


def prepare(env: str, overrides: dict | None = None, progress: Progress = print, dry: bool = False,
            need_engine: bool = True) -> Stack:
    overrides = dict(overrides or {})
    if need_engine:
        engine.ensure_engine(progress, dry=dry)
        overrides = choose_bases(env, overrides, progress)
    result = render.render(env, overrides=overrides)
    bases = render.load_values(env, overrides)["bases"]
    if need_engine and bases["mode"] == "offline":
        offline = bases["offline"]
        images.bootstrap(debian_tag=offline["debian"], python_tag=offline["python"], influxdb_tag=offline["influxdb"],
                         progress=progress, dry=dry)
    return Stack(result)


FIRST_READING_TIMEOUT_S = 120.0


def first_reading_url(result) -> str:
    return result.urls["api"].rstrip("/") + "/data?limit=1"


def wait_for_first_reading(stack: Stack, timeout: float = FIRST_READING_TIMEOUT_S) -> float | None:
    """Seconds until the api serves a stored reading (the simulator is running), or None."""
    url = first_reading_url(stack.result)
    token = stack.result.secrets[secrets.API_READ_TOKEN].read_text().strip()
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            resp = http_client.request("GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
            if resp.status_code == 200 and b'"count":0' not in resp.content:
                return time.monotonic() - started
        except OSError:  # not up yet: requests' errors are OSErrors
            pass
        time.sleep(0.5)
    return None
