"""Dependencies: the hash-locked requirements (ops/locks.py)."""
from invoke import Collection, task

from ops import commands

from ._common import clear_errors


@task(name="lock", help={
    "upgrade": "also move every dependency the .txt files do not pin (the transitive ones) to its newest version; "
               "without it only the changed pins of the .txt files move",
})
def deps_lock(c, upgrade=False):
    """Regenerate requirements.lock and requirements-dev.lock from requirements.txt and requirements-dev.txt.

    Pins every transitive dependency with the sha256 of each of its files, for every platform and Python 3.11+
    (uv pip compile --universal; uv is installed into a venv of its own the first time). Run it after
    editing a requirements .txt file (tests/unit/test_locks.py fails until you do), then commit both."""
    from ops import locks

    with clear_errors():
        locks.regenerate(lambda argv: c.run(commands.command_line(argv), pty=False), dry=c.config.run.dry,
                         upgrade=upgrade)


deps_ns = Collection("deps")
deps_ns.add_task(deps_lock, name="lock")
