"""invoke entry point: thin on purpose; each task is a few calls into ops/."""
from invoke import task

@task
def test(c):
    """placeholder"""
    c.run("pytest")
