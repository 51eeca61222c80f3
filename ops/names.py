"""How the Docker objects of an environment are named, in one place (render, deploy, db, the tasks):

    stack_name     <project>-<env>            Compose project of compose.yaml and Swarm stack of stack.yaml
    autotest       <project>-<env>-autotest   Compose project of autotest.yaml
    swarm objects  <stack>_<key>_<hash>       a secret or config, hashed on its file's content, so a changed
                                              file is a new object (Swarm's are immutable); `key_of` reverses it
    our images     <registry><repo>:<version>  the api, simulator, device, broker and web images

`project` comes from the values (stacks/values/*.yaml, `--set project=…`), so the name a task looks for
is the name the render gave: nothing else writes the formula (tests/unit/test_stack_name.py checks).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .secrets import content_hash


def stack_name(values: Mapping, env: str) -> str:
    """The Swarm stack (and Compose project) of ENV, from its loaded VALUES (ops.values.load_values)."""
    return f"{values['project']}-{env}"


def our_images(values: Mapping) -> dict[str, str]:
    """{name: <registry><repo>:<version>} for the images we build (values `images`), as the stacks run them."""
    registry, version = values["registry"], values["version"]
    return {name: f"{registry}{repo}:{version}" for name, repo in values["images"].items()}


def autotest_project(values: Mapping, env: str) -> str:
    """The Compose project of ENV's autotest file: apart from the stack's, so both can run at once."""
    return f"{stack_name(values, env)}-autotest"


def swarm_object_names(stack: str, files: Mapping[str, Path]) -> dict[str, str]:
    """{key: <stack>_<key>_<hash of the file>} for the secrets or configs FILES {key: file}, in their order."""
    return {key: f"{stack}_{key}_{content_hash(path)}" for key, path in files.items()}


def key_of(stack: str, swarm_name: str) -> str:
    """'iot-test_api_tokens_16b184561253' -> 'api_tokens' (the file's name in secrets/ENV): the inverse
    of swarm_object_names."""
    return swarm_name[len(stack) + 1:].rsplit("_", 1)[0]
