"""ops/secrets.py: generated on first use, strict permissions, never overwritten, api tokens format."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ops import mqtt_auth, secrets


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_with_strict_permissions(tmp_path):
    folder = tmp_path / "secrets" / "dev"
    old = os.umask(0o022)
    try:
        paths = secrets.ensure_secrets(folder)
    finally:
        os.umask(old)
    assert set(paths) == set(secrets.ALL)
    assert mode(folder) == 0o700 and mode(folder.parent) == 0o700  # both made here
    for name, path in paths.items():
        assert path.parent == folder and path.name == name
        assert mode(path) == 0o600, name
        assert len(path.read_text().strip()) >= 32


def test_values_are_distinct_and_random(tmp_path):
    a = secrets.ensure_secrets(tmp_path / "a")
    b = secrets.ensure_secrets(tmp_path / "b")
    plain = [n for n in secrets.ALL if n not in (secrets.API_TOKENS, secrets.MOSQUITTO_PASSWD, secrets.MOSQUITTO_ACL)]
    values = [a[n].read_text() for n in plain] + [b[n].read_text() for n in plain]
    assert len(set(values)) == len(values)


def test_never_overwritten(tmp_path):
    paths = secrets.ensure_secrets(tmp_path)
    before = {name: path.read_bytes() for name, path in paths.items()}
    paths[secrets.GRAFANA_ADMIN_PASSWORD].write_text("chosen-by-the-operator-0123456789\n")
    os.chmod(paths[secrets.GRAFANA_ADMIN_PASSWORD], 0o644)
    again = secrets.ensure_secrets(tmp_path)
    assert again[secrets.GRAFANA_ADMIN_PASSWORD].read_text() == "chosen-by-the-operator-0123456789\n"
    assert mode(again[secrets.GRAFANA_ADMIN_PASSWORD]) == 0o600  # tightened, content kept
    for name, data in before.items():
        if name != secrets.GRAFANA_ADMIN_PASSWORD:
            assert again[name].read_bytes() == data


def test_only_missing_ones_are_generated(tmp_path):
    secrets.ensure_secrets(tmp_path, names=[secrets.GRAFANA_ADMIN_PASSWORD])
    assert sorted(p.name for p in tmp_path.iterdir()) == [secrets.GRAFANA_ADMIN_PASSWORD]


def test_api_tokens_in_the_api_format(tmp_path):
    paths = secrets.ensure_secrets(tmp_path, names=[secrets.API_TOKENS])
    assert set(paths) == {secrets.API_TOKENS, secrets.SIMULATOR_TOKEN, secrets.API_READ_TOKEN}
    from iot_api.auth import Tokens

    tokens = Tokens.load(str(paths[secrets.API_TOKENS]))
    write = paths[secrets.SIMULATOR_TOKEN].read_text().strip().encode()
    read = paths[secrets.API_READ_TOKEN].read_text().strip().encode()
    assert tokens.scopes_of(b"Bearer " + write) == frozenset({"write"})
    assert tokens.scopes_of(b"Bearer " + read) == frozenset({"read"})


def test_tokens_file_that_does_not_match_is_an_error_not_a_rewrite(tmp_path):
    paths = secrets.ensure_secrets(tmp_path)
    tokens_before = paths[secrets.API_TOKENS].read_bytes()
    paths[secrets.SIMULATOR_TOKEN].unlink()
    with pytest.raises(secrets.SecretsError) as err:
        secrets.ensure_secrets(tmp_path)
    assert "api_tokens" in str(err.value) and "simulator_token" in str(err.value)
    assert paths[secrets.API_TOKENS].read_bytes() == tokens_before
    # the message names files, never a value
    for path in tmp_path.iterdir():
        assert path.read_text().strip().splitlines()[-1].split()[-1] not in str(err.value)


def test_empty_secret_is_an_error(tmp_path):
    (tmp_path / secrets.GRAFANA_ADMIN_PASSWORD).write_text("")
    with pytest.raises(secrets.SecretsError, match="is empty"):
        secrets.ensure_secrets(tmp_path)


def test_unknown_name(tmp_path):
    with pytest.raises(secrets.SecretsError, match="unknown secret nope"):
        secrets.ensure_secrets(tmp_path, names=["nope"])


def test_content_hash_follows_content(tmp_path):
    f = tmp_path / "x"
    f.write_text("one")
    h1 = secrets.content_hash(f)
    assert h1 == secrets.content_hash(f) and len(h1) == 12
    f.write_text("two")
    assert secrets.content_hash(f) != h1


def test_compose_environment(tmp_path):
    paths = secrets.ensure_secrets(tmp_path)
    env = secrets.compose_environment(paths)
    assert env["IOT_SECRET_GRAFANA_ADMIN_PASSWORD"] == paths[secrets.GRAFANA_ADMIN_PASSWORD].read_text().strip()
    assert secrets.compose_variable("api_tokens") == "IOT_SECRET_API_TOKENS"
    assert set(env) == {secrets.compose_variable(n) for n in secrets.ALL}


# -- the broker's derived files: mosquitto_passwd and mosquitto_acl (ops/mqtt_auth.py) -------------------
def _entries(path: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_broker_files_hold_every_user_and_never_a_password_in_clear(tmp_path):
    paths = secrets.ensure_secrets(tmp_path / "s")
    passwords = {role: paths[name].read_text().strip() for role, name in secrets.MQTT_PASSWORDS.items()}
    entries = _entries(paths[secrets.MOSQUITTO_PASSWD])
    assert set(entries) == {f"iot_{role}" for role in mqtt_auth.ROLES}
    for role, password in passwords.items():
        assert mqtt_auth.check_password(password, entries[f"iot_{role}"])
        assert not mqtt_auth.check_password(password + "x", entries[f"iot_{role}"])
        for name in (secrets.MOSQUITTO_PASSWD, secrets.MOSQUITTO_ACL):
            assert password not in paths[name].read_text(), name
    for name in (secrets.MOSQUITTO_PASSWD, secrets.MOSQUITTO_ACL):
        assert mode(paths[name]) == 0o600, name
    assert "user iot_web\ntopic read iot/#\n" in paths[secrets.MOSQUITTO_ACL].read_text()


def test_broker_password_file_kept_while_passwords_are_the_same(tmp_path):
    """Hashes have random salts: remaking the file at every render would give it a new Swarm secret name
    (and restart the broker) at every deploy. Unchanged passwords keep the file byte for byte."""
    folder = tmp_path / "s"
    paths = secrets.ensure_secrets(folder)
    before = paths[secrets.MOSQUITTO_PASSWD].read_bytes()
    acl = paths[secrets.MOSQUITTO_ACL].read_bytes()
    secrets.ensure_secrets(folder)
    assert paths[secrets.MOSQUITTO_PASSWD].read_bytes() == before
    assert paths[secrets.MOSQUITTO_ACL].read_bytes() == acl


def test_broker_password_file_remade_when_a_password_changes(tmp_path):
    folder = tmp_path / "s"
    paths = secrets.ensure_secrets(folder)
    passwd = paths[secrets.MOSQUITTO_PASSWD]
    old_hash = secrets.content_hash(passwd)
    fleet = paths[secrets.MQTT_PASSWORDS["fleet"]]
    old_password = fleet.read_text().strip()
    fleet.unlink()  # rotating a secret: delete its file
    secrets.ensure_secrets(folder)
    new_password = fleet.read_text().strip()
    assert new_password != old_password
    entry = _entries(passwd)["iot_fleet"]
    assert mqtt_auth.check_password(new_password, entry) and not mqtt_auth.check_password(old_password, entry)
    assert secrets.content_hash(passwd) != old_hash  # a new Swarm secret: the broker gets the new file
    assert mode(passwd) == 0o600
    assert not list(folder.glob(".*.tmp"))  # replaced atomically, nothing left behind


def test_broker_files_follow_the_user_names(tmp_path):
    folder = tmp_path / "s"
    secrets.ensure_secrets(folder)
    users = dict(secrets.DEFAULT_MQTT_USERS, web="page")
    paths = secrets.ensure_secrets(folder, mqtt_users=users)
    assert "page" in _entries(paths[secrets.MOSQUITTO_PASSWD]) and "iot_web" not in _entries(paths[secrets.MOSQUITTO_PASSWD])
    assert "user page\n" in paths[secrets.MOSQUITTO_ACL].read_text()
    assert "user iot_web\n" not in paths[secrets.MOSQUITTO_ACL].read_text()


def test_a_tampered_broker_file_is_remade(tmp_path):
    folder = tmp_path / "s"
    paths = secrets.ensure_secrets(folder)
    paths[secrets.MOSQUITTO_PASSWD].write_text("iot_fleet:$7$101$AAAA$BBBB\n")
    paths[secrets.MOSQUITTO_ACL].write_text("user iot_web\ntopic readwrite #\n")
    secrets.ensure_secrets(folder)
    assert set(_entries(paths[secrets.MOSQUITTO_PASSWD])) == {f"iot_{r}" for r in mqtt_auth.ROLES}
    assert "topic readwrite #" not in paths[secrets.MOSQUITTO_ACL].read_text()


@pytest.mark.parametrize("hashed", ["", "plain", "$6$101$c2FsdA==$aGFzaA==", "$7$x$c2FsdA==$aGFzaA==",
                                    "$7$101$not base64!$aGFzaA==", "$7$101$c2FsdA==$aGFzaA==$extra"])
def test_check_password_refuses_malformed_hashes(hashed):
    assert mqtt_auth.check_password("secret", hashed) is False


def test_check_password_against_a_known_hash():
    """A fixed salt gives a fixed `$7$` line: the format mosquitto_passwd 2.0 writes (PBKDF2-SHA512, 101)."""
    hashed = mqtt_auth.hash_password("secret", salt=b"0123456789ab")
    assert hashed.startswith("$7$101$MDEyMzQ1Njc4OWFi$") and len(hashed.split("$")[4]) == 88
    assert mqtt_auth.check_password("secret", hashed)
    assert not mqtt_auth.check_password("Secret", hashed)
