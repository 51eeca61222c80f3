"""The stack name (<project>-<env>: Compose project and Swarm stack) comes from one place, ops/names.py: the
name render gives, the deploy plan's, the one the swarm tasks act on and ops/db.py's target agree for every
env and for a `--set project=…` override, and no other file writes the formula."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from invoke import Config, Context

from ops import db, names, render, swarm

ROOT = Path(__file__).resolve().parents[2]
ENVS = render.list_envs()
OVERRIDES = [None, {"project": "acme"}]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """env, overrides -> RenderResult (rendered once per module into a temporary folder)."""
    cache: dict = {}

    def get(env, overrides):
        key = (env, tuple(sorted((overrides or {}).items())))
        if key not in cache:
            tmp = tmp_path_factory.mktemp(f"{env}-render")
            cache[key] = render.render(env, out_dir=tmp / "out", secrets_dir=tmp / "secrets", overrides=overrides)
        return cache[key]
    return get


@pytest.mark.parametrize("overrides", OVERRIDES, ids=["values", "set-project"])
@pytest.mark.parametrize("env", ENVS)
def test_render_deploy_plan_tasks_and_db_agree(env, overrides, rendered):
    result = rendered(env, overrides)
    values = render.load_values(env, overrides)
    expected = f"{(overrides or {}).get('project', values['project'])}-{env}"
    assert names.stack_name(values, env) == expected
    assert result.stack_name == result.project == expected
    assert result.autotest_project == f"{expected}-autotest"
    assert swarm.stack_of(env, overrides).name == expected  # rollback, status, scale, undeploy
    assert db.target_for(env, overrides, kind="swarm").name == expected  # db.backup --target swarm
    plan = swarm.plan_from_render(result, environ={})  # what `./iot deploy` runs
    assert plan.stack == expected
    assert plan.secrets and plan.configs
    for name in [*plan.secrets, *plan.configs]:  # the Swarm objects are the stack's, and name their file
        assert name.startswith(f"{expected}_"), name
        assert names.key_of(expected, name) in {**result.secrets, **result.config_files}, name
    assert f"-c stack.yaml {expected}`" in result.files["stack.yaml"].read_text()  # the file's own comment


@pytest.mark.parametrize("env", ENVS)
def test_the_swarm_tasks_act_on_the_stack_render_names(env, rendered, capsys):
    from tasks import swarm as swarm_tasks

    c = Context(Config(overrides={"run": {"dry": True}, "iot": {"env": "dev", "autotest_env": "test"}}))
    swarm_tasks.undeploy(c, env=env)  # --dry: prints `docker stack rm NAME`, runs nothing
    assert f"would run: docker stack rm {rendered(env, None).stack_name}\n" in capsys.readouterr().err


FORMULA = re.compile(r"project\W*\}-\{\W*env")  # {values['project']}-{env}, {project}-{env}, {{ project }}-{{ env }}


def test_the_formula_is_written_once():
    files = [p for folder in ("ops", "tasks", "tests", "ci", "stacks") for p in (ROOT / folder).rglob("*")
             if p.suffix in (".py", ".j2", ".sh") and p.is_file() and p != Path(__file__).resolve()]
    writers = sorted(str(p.relative_to(ROOT)) for p in files if FORMULA.search(p.read_text(errors="replace")))
    assert writers == ["ops/names.py"], f"the stack name formula outside ops/names.py (call names.stack_name): {writers}"


def test_the_check_can_fail():
    assert FORMULA.search('name=f"{values[\'project\']}-{env}"')
    assert FORMULA.search("stack.yaml {{ project }}-{{ env }}`")
    assert not FORMULA.search('MQTT_CLIENT_ID=f"{values[\'project\']}-{name}"')
