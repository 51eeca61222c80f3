"""InfluxDB backup into a file on the operator's machine, and restore into a running stack
(`invoke db.backup`, `invoke db.restore`).

Both work on a running stack, Compose or Swarm, through `docker exec` into its InfluxDB container
(found by label: `com.docker.compose.project`/`.service`, or `com.docker.swarm.service.name`; for
Swarm that container must run on the engine the docker CLI talks to: the node labelled for InfluxDB).
Nothing is rendered: the target comes from the env's values (project, db, rp, measurement).

Backup:  influxd backup -portable -db DB /tmp/iot-backup-ID (inside the container; influxd's RPC on
         127.0.0.1:8088 is local there) + iot-backup.json (counts at backup time)
         -> docker exec … tar -C /tmp/iot-backup-ID -cz . > FILE (written as FILE.partial, then renamed)
Restore: the archive is checked here (gzip tar with iot-backup.json and influxd's *.manifest), copied in
         (docker exec -i … tar -xz), restored with `influxd restore -portable -db DB -newdb TMP` into a
         temporary database, copied into DB with `SELECT * INTO "DB"."RP".:MEASUREMENT … GROUP BY *`
         (per retention policy, created in DB when missing), TMP dropped. The live database is never
         dropped. A DB that already holds points is refused unless `force` (the archive's points are
         then merged in; identical points overwrite themselves). The count in DB is checked afterwards.

Counts are InfluxQL queries sent from the stack's api container (it has python3; the 1.6 InfluxDB
image has no client) to http://influxdb:PORT; with influxdb.auth the admin password is read from
secrets/ENV and sent through stdin, never on a command line.
"""
from __future__ import annotations

import json
import shlex
import sys
import tarfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ops import names, render
from ops import run as ops_run
from ops import secrets as secrets_mod
from ops.errors import OpsError

ROOT = Path(__file__).resolve().parent.parent
BACKUP_DIR = ROOT / "backups"
MANIFEST = "iot-backup.json"
TARGETS = ("compose", "swarm")
Progress = Callable[[str], None]

# Runs in the api container: one InfluxQL statement from stdin ({"url", "q", "db", "u", "p"}) -> the JSON
# answer; POST (SELECT INTO, DROP need it), credentials as HTTP Basic auth (InfluxDB 1.x reads u/p only
# from the URL, which would put the password in logs).
QUERY_SCRIPT = (
    "import base64, json, sys, urllib.parse, urllib.request\n"
    "a = json.load(sys.stdin)\n"
    "form = {'q': a['q']}\n"
    "form.update({'db': a['db']} if a.get('db') else {})\n"
    "req = urllib.request.Request(a['url'] + '/query', data=urllib.parse.urlencode(form).encode())\n"
    "if a.get('u'):\n"
    "    req.add_header('Authorization', 'Basic ' + base64.b64encode((a['u'] + ':' + a['p']).encode()).decode())\n"
    "print(urllib.request.urlopen(req, timeout=600).read().decode())\n"
)


class DbError(OpsError):
    """A backup or restore that cannot go on; str() is the one line to show."""


class DbCommandError(ops_run.CommandError, DbError):
    """A docker command of a backup or restore that failed (argv, status and its output's tail)."""


def say(message: str) -> None:
    print(f"db: {message}", file=sys.stderr, flush=True)


# -- the target --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    kind: str                  # compose | swarm
    env: str
    name: str                  # compose project / swarm stack: <project>-<env>
    db: str
    rp: str
    measurement: str
    port: int
    admin_user: str | None = None        # set when influxdb.auth
    admin_password_file: Path | None = None

    def filters(self, service: str) -> list[str]:
        """`docker ps` filters for the running container of SERVICE (influxdb, api)."""
        if self.kind == "swarm":
            labels = [f"com.docker.swarm.service.name={self.name}_{service}"]
        else:
            labels = [f"com.docker.compose.project={self.name}", f"com.docker.compose.service={service}"]
        out = []
        for label in labels:
            out += ["--filter", f"label={label}"]
        return out + ["--filter", "status=running"]

    def where(self, service: str) -> str:
        if self.kind == "swarm":
            return f"swarm service {self.name}_{service}"
        return f"compose project {self.name}, service {service}"


def target_for(env: str, overrides: dict | None = None, kind: str = "compose") -> Target:
    if kind not in TARGETS:
        raise DbError(f"--target {kind}: use one of {', '.join(TARGETS)}")
    values = render.load_values(env, overrides or {})
    influx = values["influxdb"]
    auth = bool(influx["auth"])
    return Target(kind=kind, env=env, name=names.stack_name(values, env), db=influx["db"], rp=influx["rp"],
                  measurement=influx["measurement"], port=int(influx["port"]),
                  admin_user=influx["users"]["admin"] if auth else None,
                  admin_password_file=(ROOT / "secrets" / env / secrets_mod.INFLUXDB_ADMIN_PASSWORD) if auth else None)


def default_out(env: str, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return BACKUP_DIR / f"{env}-{stamp}.tar.gz"


# -- command lines (pure) ------------------------------------------------------------------------------
def backup_argv(container: str, db: str, workdir: str) -> list[str]:
    return ["docker", "exec", container, "influxd", "backup", "-portable", "-db", db, workdir]


def write_file_argv(container: str, path: str) -> list[str]:
    """Write stdin to PATH in the container."""
    return ["docker", "exec", "-i", container, "sh", "-c", f"cat > {shlex.quote(path)}"]


def tar_out_argv(container: str, workdir: str) -> list[str]:
    return ["docker", "exec", container, "tar", "-C", workdir, "-cz", "."]


def tar_in_argv(container: str, workdir: str) -> list[str]:
    q = shlex.quote(workdir)
    return ["docker", "exec", "-i", container, "sh", "-c", f"mkdir -p {q} && tar -C {q} -xz"]


def restore_argv(container: str, db: str, newdb: str, workdir: str) -> list[str]:
    return ["docker", "exec", container, "influxd", "restore", "-portable", "-db", db, "-newdb", newdb, workdir]


def cleanup_argv(container: str, workdir: str) -> list[str]:
    return ["docker", "exec", container, "rm", "-rf", workdir]


def query_argv(container: str) -> list[str]:
    return ["docker", "exec", "-i", container, "python3", "-c", QUERY_SCRIPT]


def copy_statement(src_db: str, dst_db: str, rp: str) -> str:
    """Every measurement of SRC_DB.RP into DST_DB.RP, tags kept as tags (GROUP BY *)."""
    return (f"SELECT * INTO {_ident(dst_db)}.{_ident(rp)}.:MEASUREMENT "  # noqa: S608 - InfluxQL, names quoted by _ident
            f"FROM {_ident(src_db)}.{_ident(rp)}./.*/ GROUP BY *")


def create_rp_statement(db: str, rp: dict) -> str:
    """The retention policy RP (a `SHOW RETENTION POLICIES` row of the restored copy) in DB, same settings."""
    text = f"CREATE RETENTION POLICY {_ident(rp['name'])} ON {_ident(db)} DURATION {rp.get('duration') or 'INF'} REPLICATION 1"
    if rp.get("shardGroupDuration"):
        text += f" SHARD DURATION {rp['shardGroupDuration']}"
    return text + (" DEFAULT" if rp.get("default") else "")


def count_statement(target: Target, db: str | None = None) -> str:
    source = f"{_ident(db or target.db)}.{_ident(target.rp)}.{_ident(target.measurement)}"
    return f'SELECT count("value") FROM {source} GROUP BY "sensor_id"'  # noqa: S608 - InfluxQL, names quoted


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_counts(answer: dict) -> dict[str, int]:
    """`count … GROUP BY sensor_id` answer -> {sensor_id: count}; {} for no data or no database."""
    out: dict[str, int] = {}
    for result in answer.get("results", []):
        for series in result.get("series", []) or []:
            sensor = (series.get("tags") or {}).get("sensor_id", "")
            out[sensor] = out.get(sensor, 0) + sum(int(row[1]) for row in series.get("values") or [])
    return out


def check_archive(path: Path) -> dict:
    """The manifest of a backup file, after checking it is one; DbError otherwise."""
    if not path.is_file():
        raise DbError(f"{path}: no such file")
    try:
        with tarfile.open(path, "r:gz") as tar:
            names = [m.name for m in tar.getmembers()]
            bad = [n for n in names if n.startswith("/") or ".." in Path(n).parts]
            if bad:
                raise DbError(f"{path}: unsafe path in the archive: {bad[0]}")
            member = next((m for m in tar.getmembers() if Path(m.name).name == MANIFEST), None)
            if member is None:
                raise DbError(f"{path}: not an iot backup (no {MANIFEST} inside; make one with `./iot db.backup`)")
            if not any(n.endswith(".manifest") for n in names):
                raise DbError(f"{path}: no influxd portable manifest (*.manifest) inside: not a portable backup")
            manifest = json.load(tar.extractfile(member))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DbError(f"{path}: not a gzip tar archive ({exc})") from None
    except json.JSONDecodeError:
        raise DbError(f"{path}: {MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or "db" not in manifest:
        raise DbError(f"{path}: {MANIFEST} has no db")
    return manifest


# -- running docker ----------------------------------------------------------------------------------
@dataclass
class Runner:
    dry: bool = False
    progress: Progress = say

    def run(self, argv: Sequence[str], stdin: bytes | None = None, stdin_file: Path | None = None,
            stdout_file: Path | None = None, echo: bool = True, read: bool = False, timeout: float = 3600) -> bytes:
        """ops.run.run with this module's defaults: bytes out, DbCommandError on failure; read=True runs
        in a dry run too (a read-only command)."""
        return ops_run.run(argv, self.progress, dry=self.dry, read=read, echo=echo, timeout=timeout,
                           input=stdin, stdin_file=stdin_file,
                           stdout_file=stdout_file, text=False, error=DbCommandError).stdout


def find_container(runner: Runner, target: Target, service: str) -> str:
    """The id of the running container of SERVICE, on the engine the docker CLI talks to."""
    out = runner.run(["docker", "ps", "-q", *target.filters(service)], echo=False, read=True).decode().split()
    if out:
        return out[0]
    if runner.dry:
        return f"<{target.name}-{service}>"
    if target.kind == "swarm":
        raise DbError(f"no running container of {target.where(service)} on this engine: is the stack deployed "
                      f"(`./iot deploy --env {target.env}`)? On a multi-node swarm point the docker CLI at the node "
                      "that runs it (DOCKER_HOST=ssh://…, a docker context; InfluxDB is on the node labelled iot.influxdb=true)")
    raise DbError(f"no running container of {target.where(service)}: start the stack first "
                  f"(`./iot up --env {target.env}`)")


class Influx:
    """InfluxQL through the api container."""

    def __init__(self, runner: Runner, target: Target, api_container: str):
        self.runner, self.target, self.api = runner, target, api_container
        self.user, self.password = target.admin_user, None
        if target.admin_password_file is not None:
            try:
                self.password = target.admin_password_file.read_text().strip()
            except OSError:
                if not runner.dry:  # --dry prints what would run: it must not need the secrets
                    raise DbError(f"influxdb.auth is on but {target.admin_password_file} cannot be read") from None

    def query(self, q: str, db: str | None = None, write: bool = False) -> dict:
        """Run one statement; reads run in dry mode too, changes (write=True) are only printed there."""
        if write:
            self.runner.progress(("would query: " if self.runner.dry else "query: ") + q)
            if self.runner.dry:
                return {}
        payload = {"url": f"http://influxdb:{self.target.port}", "q": q, "db": db, "u": self.user, "p": self.password}
        out = self.runner.run(query_argv(self.api), stdin=json.dumps(payload).encode(), echo=False, read=True)
        try:
            answer = json.loads(out.decode() or "{}")
        except json.JSONDecodeError:
            raise DbError(f"InfluxDB answered something that is not JSON to: {q}") from None
        for result in answer.get("results", []):
            if result.get("error") and "database not found" not in result["error"]:
                raise DbError(f"InfluxDB: {result['error']} (query: {q})")
        if answer.get("error"):
            raise DbError(f"InfluxDB: {answer['error']} (query: {q})")
        return answer

    def databases(self) -> set[str]:
        answer = self.query("SHOW DATABASES")
        return {row[0] for r in answer.get("results", []) for s in r.get("series", []) or [] for row in s.get("values") or []}

    def retention_policies(self, db: str) -> list[dict]:
        answer = self.query(f"SHOW RETENTION POLICIES ON {_ident(db)}")
        out = []
        for r in answer.get("results", []):
            for s in r.get("series", []) or []:
                cols = s["columns"]
                out += [dict(zip(cols, row, strict=False)) for row in s.get("values") or []]
        return out

    def counts(self, db: str | None = None, dry_too: bool = False) -> dict[str, int]:
        """Points per sensor; in a dry run {} unless DRY_TOO (a database that exists now: the read can be made)."""
        if self.runner.dry and not dry_too:
            return {}
        return parse_counts(self.query(count_statement(self.target, db)))


def _summary(counts: dict[str, int]) -> str:
    return f"{sum(counts.values())} points, {len(counts)} sensors"


# -- backup --------------------------------------------------------------------------------------------
def backup(target: Target, out: Path, runner: Runner) -> dict:
    """Write a portable backup of the target's database to OUT; returns the manifest written into it."""
    influxdb = find_container(runner, target, "influxdb")
    influx = Influx(runner, target, find_container(runner, target, "api"))
    if not runner.dry and target.db not in influx.databases():
        raise DbError(f"database {target.db} does not exist in {target.where('influxdb')}: nothing to back up")
    before = influx.counts()
    workdir = f"/tmp/iot-backup-{uuid.uuid4().hex[:10]}"
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if not runner.dry:
        out.parent.mkdir(parents=True, exist_ok=True)
    try:
        runner.run(backup_argv(influxdb, target.db, workdir))
        after = influx.counts()
        manifest = {"format": 1, "env": target.env, "source": target.name, "target": target.kind, "db": target.db,
                    "rp": target.rp, "measurement": target.measurement,
                    "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "count": sum(before.values()), "counts": before, "exact": before == after}
        if before != after:
            runner.progress(f"note: writes during the backup: {sum(before.values())} points before, "
                            f"{sum(after.values())} after; the archive holds a count in between")
        runner.run(write_file_argv(influxdb, f"{workdir}/{MANIFEST}"), stdin=json.dumps(manifest, indent=1).encode())
        runner.run(tar_out_argv(influxdb, workdir), stdout_file=partial)
        if not runner.dry:
            partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        runner.run(cleanup_argv(influxdb, workdir))
    return manifest


# -- restore -------------------------------------------------------------------------------------------
def restore(target: Target, archive: Path, runner: Runner, force: bool = False) -> dict:
    """Restore ARCHIVE into the target's database; returns {'before', 'restored', 'after'} counts."""
    manifest = check_archive(Path(archive))
    influxdb = find_container(runner, target, "influxdb")
    influx = Influx(runner, target, find_container(runner, target, "api"))
    existing: set[str] = set()
    try:  # a dry run asks too (a read), so that it prints the statements the run would send
        existing = influx.databases()
    except DbError as exc:
        if not runner.dry:
            raise
        runner.progress(f"note: the databases could not be listed ({exc}): the plan as for a fresh stack")
    before = influx.counts(dry_too=True) if target.db in existing else {}  # dry refuses where the run would
    if sum(before.values()) and not force:
        raise DbError(f"database {target.db} in {target.where('influxdb')} already holds {_summary(before)}: "
                      "restore into a fresh stack (`./iot down --env ENV --volumes` then `up`), or --force to merge "
                      "the backup into it")
    if sum(before.values()):
        runner.progress(f"--force: merging the backup into {target.db}, which holds {_summary(before)}")
    tmp_db = f"{target.db}_restore_{uuid.uuid4().hex[:8]}"
    workdir = f"/tmp/iot-restore-{uuid.uuid4().hex[:10]}"
    try:
        runner.run(tar_in_argv(influxdb, workdir), stdin_file=Path(archive))
        runner.run(restore_argv(influxdb, manifest["db"], tmp_db, workdir))
        restored = influx.counts(tmp_db)
        if not runner.dry and manifest.get("exact") and sum(restored.values()) != manifest.get("count"):
            raise DbError(f"the archive says {manifest.get('count')} points but {sum(restored.values())} were restored")
        influx.query(f"CREATE DATABASE {_ident(target.db)}", write=True)  # no-op when it exists
        # dry: the live database's policies as they are now; the backup's own (the copy is not restored) from its manifest
        have = ({rp["name"] for rp in influx.retention_policies(target.db)}
                if not runner.dry or target.db in existing else set())
        policies = influx.retention_policies(tmp_db) if not runner.dry else [{"name": manifest.get("rp") or target.rp}]
        for rp in policies:
            if rp["name"] not in have:
                influx.query(create_rp_statement(target.db, rp), write=True)
            influx.query(copy_statement(tmp_db, target.db, rp["name"]), write=True)
    finally:
        influx.query(f"DROP DATABASE {_ident(tmp_db)}", write=True)
        runner.run(cleanup_argv(influxdb, workdir))
    after = influx.counts()
    if not runner.dry:
        missing = {s: n for s, n in restored.items() if after.get(s, 0) < n}
        if missing:
            raise DbError(f"after the restore {len(missing)} sensors have fewer points than the backup "
                          f"(e.g. {next(iter(missing))}): check `./iot logs --env {target.env} --service influxdb`")
    return {"manifest": manifest, "before": before, "restored": restored, "after": after}
