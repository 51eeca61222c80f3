"""Every task's `--env` help names the default the task really uses (`./iot --help autotest` once said
dev while the task ran test): the config key and value the help states are the namespace's, and the task,
run with that key set to a made-up environment, fails on exactly that one."""
from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATED = re.compile(r"default: the config's (?:iot\.)?(\w+)(?: \(([^;)]+)[;)])?")
# What a task needs besides --env to get as far as choosing its environment.
ARGS = {"scale": ["--service", "api=2"], "db.restore": ["--file", "backup.tar.gz"], "images.name": ["--image", "api"],
        # --dry prints the cluster's network and nodes before it renders the env (which only real runs do);
        # the engine is out of reach (DOCKER_HOST below), so the real run can only fail.
        "cluster.create": ["--image", "iot/none:0"]}
NOT_DRY = {"cluster.create"}


# invoke moves a task's help into the parser's arguments the first time they are made (and other tests
# make them), so the help is read in a fresh interpreter, as `./iot --help TASK` reads it.
_READ = """
import json, tasks
print(json.dumps({"help": {ctx.name: ctx.args["env"].help for ctx in tasks.ns.to_contexts() if "env" in ctx.args},
                  "defaults": dict(tasks.ns.configuration()["iot"])}))
"""


@functools.cache
def _read() -> dict:
    out = subprocess.run([sys.executable, "-c", _READ], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def env_tasks() -> dict[str, str]:
    """{task name: its --env help} for every task with an --env option."""
    return _read()["help"]


def config_defaults() -> dict[str, str]:
    return _read()["defaults"]


def stated(help_text: str) -> tuple[str, str | None]:
    m = STATED.search(" ".join((help_text or "").split()))
    assert m, f"the --env help does not say its default as `the config's iot.KEY (VALUE; …)`: {help_text!r}"
    return m.group(1), m.group(2)


# The tasks, one after the other in one fresh interpreter (as many processes would cost seconds each).
_RUN = """
import contextlib, io, json, sys, traceback
from ops.cli import make_program
out = {}
for name, argv in json.loads(sys.argv[1]).items():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            make_program().run(["iot", *argv], exit=False)
        except Exception:
            traceback.print_exc()
    out[name] = buf.getvalue()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def runs():
    """Each task run with every iot.* default set to a made-up `zz-KEY` environment: {task: its output}."""
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    env.update({f"INVOKE_IOT_{key.upper()}": f"zz-{key}" for key in config_defaults()})
    argvs = {name: [*([] if name in NOT_DRY else ["--dry"]), name, *ARGS.get(name, [])] for name in env_tasks()}
    out = subprocess.run([sys.executable, "-c", _RUN, json.dumps(argvs)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_tasks_with_env_are_found():
    assert {"render", "up", "autotest", "deploy", "undeploy", "db.backup", "push"} <= set(env_tasks())


@pytest.mark.parametrize("name", sorted(env_tasks()))
def test_the_stated_default_is_the_configured_one(name):
    key, value = stated(env_tasks()[name])
    defaults = config_defaults()
    assert key in defaults, f"{name}: --env help names iot.{key}, the config has {sorted(defaults)}"
    if value is not None:
        assert value == defaults[key], f"{name}: --env help says {value}, iot.{key} is {defaults[key]}"


@pytest.mark.parametrize("name", sorted(env_tasks()))
def test_the_task_uses_the_stated_default(name, runs):
    key, _ = stated(env_tasks()[name])
    assert f"unknown env 'zz-{key}'" in runs[name], f"{name} with iot.{key}=zz-{key} did not use it:\n{runs[name]}"


def test_autotest_says_test_and_up_says_dev():
    assert stated(env_tasks()["autotest"]) == ("autotest_env", "test")
    assert stated(env_tasks()["up"]) == ("env", "dev")
