"""What every task module shares: option help texts, the environment, one-line errors."""
from contextlib import contextmanager

from invoke import Exit

# The config's defaults as the help states them: tasks/__init__.py configures the same (tests/unit/test_task_help.py
# holds them equal, and each task to the default its help states); invoke.yaml or INVOKE_IOT_* override them.
IOT_DEFAULTS = {"env": "dev", "autotest_env": "test"}


def env_help(key="env"):
    """--env's help for a task whose default environment is the config's iot.KEY (env_of's default_key)."""
    return (f"environment: a values file in stacks/values/ (dev, test, prod); default: the config's iot.{key} "
            f"({IOT_DEFAULTS[key]}; set it in invoke.yaml or with INVOKE_IOT_{key.upper()})")


ENV_HELP = env_help()
SET_HELP = "override a value, e.g. --set bases.mode=offline (repeatable)"


@contextmanager
def clear_errors(prefix="error"):
    """Failures of the ops layer end as one line and a non-zero exit, not a traceback.

    Every error class of ops/ derives from OpsError (tests/unit/test_ops_errors.py checks it), so a new
    module's errors are caught here without being listed; exit_code is 1 for a failure, 2 for bad input.
    prefix starts the line (`error: …`; bench says `bench: …`)."""
    from ops.errors import OpsError

    try:
        yield
    except OpsError as exc:
        raise Exit(f"{prefix}: {exc}", code=exc.exit_code) from None


def env_of(c, env, default_key="env"):
    """The environment given, else the config's (invoke.yaml `iot: {env: …}`, INVOKE_IOT_ENV)."""
    return env or c.config.iot[default_key]


def prepare_stack(c, env, sets, need_engine=True):
    from ops import render, stack

    env = env_of(c, env)
    with clear_errors():
        return stack.prepare(env, render.parse_overrides(sets or []), dry=c.config.run.dry,
                             need_engine=need_engine)
