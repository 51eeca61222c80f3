"""The pure parts of ops/db.py: the target from the values, the docker command lines, InfluxQL, counts,
archive checks, and the dry runs of backup and restore (they print, they touch nothing)."""
from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime

import pytest

from ops import db


def target(kind="compose"):
    # Auth off: these tests check command construction and must not need secrets/test/ to exist
    # (a fresh clone has none until something generates them). Auth wiring: test_target_comes_from_the_values.
    return db.target_for("test", {"project": "iotbk", "influxdb.auth": False}, kind)


def test_target_comes_from_the_values():
    t = target()
    assert (t.name, t.db, t.rp, t.measurement, t.port) == ("iotbk-test", "iot", "iot_rp", "data", 8086)
    off = db.target_for("test", {"influxdb.auth": False})
    assert off.admin_user is None and off.admin_password_file is None
    on = db.target_for("test", {"influxdb.auth": True})
    assert on.admin_user == "admin" and on.admin_password_file == db.ROOT / "secrets" / "test" / "influxdb_admin_password"
    with pytest.raises(db.DbError, match="--target kubernetes"):
        db.target_for("test", {}, "kubernetes")


def test_container_filters_compose_and_swarm():
    assert target().filters("influxdb") == [
        "--filter", "label=com.docker.compose.project=iotbk-test",
        "--filter", "label=com.docker.compose.service=influxdb", "--filter", "status=running"]
    assert target("swarm").filters("api") == [
        "--filter", "label=com.docker.swarm.service.name=iotbk-test_api", "--filter", "status=running"]


def test_command_lines():
    assert db.backup_argv("c1", "iot", "/tmp/w") == [
        "docker", "exec", "c1", "influxd", "backup", "-portable", "-db", "iot", "/tmp/w"]
    assert db.tar_out_argv("c1", "/tmp/w") == ["docker", "exec", "c1", "tar", "-C", "/tmp/w", "-cz", "."]
    assert db.tar_in_argv("c1", "/tmp/w") == ["docker", "exec", "-i", "c1", "sh", "-c", "mkdir -p /tmp/w && tar -C /tmp/w -xz"]
    assert db.restore_argv("c1", "iot", "iot_tmp", "/tmp/w") == [
        "docker", "exec", "c1", "influxd", "restore", "-portable", "-db", "iot", "-newdb", "iot_tmp", "/tmp/w"]
    assert db.write_file_argv("c1", "/tmp/w/a b.json")[-1] == "cat > '/tmp/w/a b.json'"
    assert db.cleanup_argv("c1", "/tmp/w") == ["docker", "exec", "c1", "rm", "-rf", "/tmp/w"]
    assert db.query_argv("c2")[:6] == ["docker", "exec", "-i", "c2", "python3", "-c"]


def test_influxql():
    assert db.copy_statement("iot_tmp", "iot", "iot_rp") == (
        'SELECT * INTO "iot"."iot_rp".:MEASUREMENT FROM "iot_tmp"."iot_rp"./.*/ GROUP BY *')
    assert db.count_statement(target()) == 'SELECT count("value") FROM "iot"."iot_rp"."data" GROUP BY "sensor_id"'
    assert db.create_rp_statement("iot", {"name": "iot_rp", "duration": "1h0m0s", "shardGroupDuration": "1h0m0s",
                                          "default": True}) == (
        'CREATE RETENTION POLICY "iot_rp" ON "iot" DURATION 1h0m0s REPLICATION 1 SHARD DURATION 1h0m0s DEFAULT')
    assert db.create_rp_statement("iot", {"name": "r", "duration": "0s"}).endswith("DURATION 0s REPLICATION 1")
    assert db._ident('a"b') == '"a\\"b"'


def test_parse_counts():
    answer = {"results": [{"statement_id": 0, "series": [
        {"name": "data", "tags": {"sensor_id": "s1"}, "columns": ["time", "count"], "values": [[0, 40]]},
        {"name": "data", "tags": {"sensor_id": "s2"}, "columns": ["time", "count"], "values": [[0, 2]]}]}]}
    assert db.parse_counts(answer) == {"s1": 40, "s2": 2}
    assert db.parse_counts({"results": [{"statement_id": 0}]}) == {}
    assert db.parse_counts({"results": [{"error": "database not found: iot"}]}) == {}


def test_default_out_is_under_backups_with_a_utc_stamp():
    out = db.default_out("prod", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert out == db.BACKUP_DIR / "prod-20260102T030405Z.tar.gz"


def _archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_check_archive(tmp_path):
    good = _archive(tmp_path / "g.tar.gz", {"./iot-backup.json": json.dumps({"db": "iot", "count": 3}).encode(),
                                            "./20260101T000000Z.manifest": b"{}"})
    assert db.check_archive(good)["count"] == 3
    with pytest.raises(db.DbError, match="no such file"):
        db.check_archive(tmp_path / "missing.tar.gz")
    (tmp_path / "junk").write_bytes(b"junk")
    with pytest.raises(db.DbError, match="not a gzip tar archive"):
        db.check_archive(tmp_path / "junk")
    with pytest.raises(db.DbError, match="not an iot backup"):
        db.check_archive(_archive(tmp_path / "a.tar.gz", {"x": b""}))
    with pytest.raises(db.DbError, match="not a portable backup"):
        db.check_archive(_archive(tmp_path / "b.tar.gz", {"iot-backup.json": b'{"db": "iot"}'}))
    with pytest.raises(db.DbError, match="unsafe path"):
        db.check_archive(_archive(tmp_path / "c.tar.gz", {"../iot-backup.json": b"{}"}))


class Recorder(db.Runner):
    """A dry runner that records what it would run; `docker ps` answers with one container."""

    def __init__(self):
        self.lines: list[str] = []
        super().__init__(dry=True, progress=self.lines.append)

    def run(self, argv, **kwargs):
        if argv[:2] == ["docker", "ps"]:
            return b"cid\n"
        return super().run(argv, **kwargs)


def test_dry_backup_prints_the_commands_and_writes_nothing(tmp_path):
    runner = Recorder()
    db.backup(target(), tmp_path / "out.tar.gz", runner)
    text = "\n".join(runner.lines)
    assert "would run: docker exec cid influxd backup -portable -db iot /tmp/iot-backup-" in text
    assert "tar -C /tmp/iot-backup-" in text and f"> {tmp_path}/out.tar.gz.partial" in text
    assert "rm -rf /tmp/iot-backup-" in text
    assert not list(tmp_path.iterdir())


def test_dry_restore_goes_through_a_temporary_database(tmp_path):
    good = _archive(tmp_path / "g.tar.gz", {"./iot-backup.json": json.dumps({"db": "iot", "count": 3}).encode(),
                                            "./x.manifest": b"{}"})
    runner = Recorder()
    db.restore(target(), good, runner)
    text = "\n".join(runner.lines)
    assert "influxd restore -portable -db iot -newdb iot_restore_" in text
    assert 'would query: SELECT * INTO "iot"."iot_rp".:MEASUREMENT FROM "iot_restore_' in text
    assert 'would query: DROP DATABASE "iot_restore_' in text
    assert "DROP DATABASE \"iot\"" not in text  # the live database is never dropped


def test_dry_backup_needs_no_secrets_even_with_auth_on(tmp_path):
    """--dry prints what would run; on a fresh clone the secrets do not exist yet, and that is fine."""
    import dataclasses

    on = dataclasses.replace(db.target_for("test", {"project": "iotbk", "influxdb.auth": True}),
                             admin_password_file=tmp_path / "missing")
    runner = Recorder()
    db.backup(on, tmp_path / "out.tar.gz", runner)
    assert any("influxd backup -portable" in line for line in runner.lines)
