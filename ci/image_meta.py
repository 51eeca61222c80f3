"""Image coordinates for the GitHub workflow, read from the values files (where they are written once).

    .venv/bin/python ci/image_meta.py --env prod --registry ghcr.io/OWNER [--tag v0.1.0] >> "$GITHUB_OUTPUT"

prints `key=value` lines (the $GITHUB_OUTPUT format):

    version=0.1.0                            values `version`: the release tag of our images
    registry=ghcr.io/owner/                  the registry prefix (lower case, one trailing slash), as `registry`
    python_base=python:3.11-slim-bookworm    values `bases.online.python`: BASE_IMAGE of the service images
    matrix={"include": [{"service": "api", "context": "api", "image": "ghcr.io/owner/iot/api", ...}]}

`--tag` is the git tag being built, if any: it must be `v<version>`, so that a release tag and the
version in the values never disagree (the deploy runs the images the values name).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ops import images, render

ROOT = Path(__file__).resolve().parent.parent

SERVICES = ("api", "simulator", "device")
# The server images run on the Swarm nodes: PCs and 64-bit Pis. The device also runs on 32-bit Pi OS.
SERVER_PLATFORMS = ("linux/amd64", "linux/arm64")
PLATFORMS = {"api": SERVER_PLATFORMS, "simulator": SERVER_PLATFORMS, "device": images.DEVICE_PLATFORMS}


class MetaError(Exception):
    pass


def registry_prefix(registry: str) -> str:
    """`ghcr.io/Owner` -> `ghcr.io/owner/`: image references must be lower case."""
    registry = registry.strip().lower().rstrip("/")
    return f"{registry}/" if registry else ""


def meta(env: str, registry: str, tag: str | None = None) -> dict[str, str]:
    values = render.load_values(env, {})
    version = str(values["version"])
    if tag and tag != f"v{version}":
        raise MetaError(f"git tag {tag!r} does not match the version {version!r} of stacks/values (env {env}): "
                        f"tag v{version}, or change `version` first")
    prefix = registry_prefix(registry)
    include = [{"service": name, "context": name, "image": f"{prefix}{values['images'][name]}",
                "platforms": ",".join(PLATFORMS[name])} for name in SERVICES]
    return {"version": version, "registry": prefix, "python_base": values["bases"]["online"]["python"],
            "matrix": json.dumps({"include": include}, sort_keys=True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="prod", help="values file of stacks/values (default prod)")
    parser.add_argument("--registry", required=True, help="registry prefix, e.g. ghcr.io/OWNER")
    parser.add_argument("--tag", default="", help="the git tag being built (must be v<version>)")
    args = parser.parse_args(argv)
    try:
        out = meta(args.env, args.registry, args.tag or None)
    except (MetaError, render.RenderError) as exc:
        print(f"image_meta: error: {exc}", file=sys.stderr)
        return 1
    for key, value in out.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
