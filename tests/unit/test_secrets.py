"""ops/secrets.py: generated on first use, strict permissions, never overwritten, api tokens format."""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops import secrets  # noqa: E402


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
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "api"))
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
