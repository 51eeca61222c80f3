"""InfluxDB backup and restore (ops/db.py)."""

from invoke import Collection, Exit, task

from ._common import ENV_HELP, SET_HELP, clear_errors, env_of

DB_TARGET_HELP = ("compose (the env's `./iot up` stack, default) or swarm (its deployed stack; the InfluxDB "
                  "task must run on the engine the docker CLI talks to)")


def _db_target(c, env, sets, target):
    from ops import db, render

    with clear_errors():
        return db.target_for(env_of(c, env), render.parse_overrides(sets or []), target)


@task(name="backup", help={"env": ENV_HELP, "set": SET_HELP, "target": DB_TARGET_HELP,
                           "out": "file to write (default backups/ENV-<UTC timestamp>.tar.gz)"}, iterable=["set"])
def db_backup(c, env=None, set=None, out=None, target="compose"):  # noqa: A002 - the option is --set
    """Back up the running stack's InfluxDB database (influxd backup -portable) into a .tar.gz file here."""
    from pathlib import Path

    from ops import db

    where = _db_target(c, env, set, target)
    path = Path(out) if out else db.default_out(where.env)
    with clear_errors():
        manifest = db.backup(where, path, db.Runner(dry=c.config.run.dry))
    if c.config.run.dry:
        print(f"would write {path}")
        return
    print(f"backup of {where.db} ({where.where('influxdb')}): {path} ({path.stat().st_size} bytes), "
          f"{manifest['count']} points of {len(manifest['counts'])} sensors at backup time")


@task(name="restore", help={"env": ENV_HELP, "set": SET_HELP, "target": DB_TARGET_HELP,
                            "file": "a file written by db.backup",
                            "force": "merge into a database that already holds points (default: refuse)"},
      iterable=["set"])
def db_restore(c, file=None, env=None, set=None, target="compose", force=False):  # noqa: A002 - the option is --set
    """Restore a db.backup file into the running stack (best a fresh one) and check the counts.

    Restored into a temporary database, copied into the live one with SELECT … INTO, then dropped: the
    live database is never dropped. One that already holds points is refused unless --force."""
    from pathlib import Path

    from ops import db

    if not file:  # an option rather than a positional, so that `db.restore --help` shows the help
        raise Exit("db.restore needs --file FILE (a file written by db.backup)", code=2)
    where = _db_target(c, env, set, target)
    with clear_errors():
        result = db.restore(where, Path(file), db.Runner(dry=c.config.run.dry), force=force)
    if c.config.run.dry:
        return
    restored, after = sum(result["restored"].values()), sum(result["after"].values())
    print(f"restored {file} into {where.db} ({where.where('influxdb')}): {restored} points of "
          f"{len(result['restored'])} sensors from the backup; {where.db} now holds {after} points "
          f"(backup made {result['manifest'].get('created')} with {result['manifest'].get('count')})")


db_ns = Collection("db")
db_ns.add_task(db_backup, name="backup")
db_ns.add_task(db_restore, name="restore")
