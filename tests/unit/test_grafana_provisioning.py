"""Grafana's provisioning (grafana-provisioning/), checked statically: Grafana itself cannot run on
these machines (no Debian package, no registry to pull grafana/grafana from), so everything around it
is checked instead -- here the files and their wiring into the rendered stacks, and in
tests/integration/test_grafana_queries.py every dashboard query against a real InfluxDB.

- every file parses and has the fields Grafana requires; dashboards reference the datasource by uid;
- the provider's path is where compose.yaml and stack.yaml put the dashboards;
- the datasource's URL, database and user, expanded from the grafana service's environment the way
  Grafana expands ${VAR}, equal the values that configure InfluxDB (one source of truth);
- no password anywhere but through the secret file; anonymous access only when asked for;
- the committed dashboard JSON is exactly what grafana-provisioning/generate.py writes;
- Swarm ships each file as a config named with a hash of its content.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path, PurePosixPath

import pytest
import yaml

from ops import render

ROOT = Path(__file__).resolve().parents[2]
PROV = ROOT / "grafana-provisioning"
DATASOURCE_FILE = PROV / "datasources" / "influxdb.yaml"
PROVIDER_FILE = PROV / "dashboards" / "provider.yaml"
DASHBOARD_FILES = sorted((PROV / "dashboards").glob("*.json"))
READER_SECRET = "/run/secrets/influxdb_reader_password"  # noqa: S105 - a path, not a value
# Every env, with Grafana in the stack (offline envs render it only with online bases).
GRAFANA_CASES = {env: {} if render.load_values(env)["bases"]["mode"] == "online" else {"bases.mode": "online"}
                 for env in render.list_envs()}


def datasource() -> dict:
    return yaml.safe_load(DATASOURCE_FILE.read_text())


def provider() -> dict:
    return yaml.safe_load(PROVIDER_FILE.read_text())


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in DASHBOARD_FILES}


def generator():
    spec = importlib.util.spec_from_file_location("grafana_generate", PROV / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grafana_expand(text: str, environ: dict[str, str]) -> str:
    """Grafana's ${VAR} / $VAR expansion in provisioning files ($__file{...} is left to the file)."""
    def sub(m):
        name = m.group(1) or m.group(2)
        assert name in environ, f"${name} is not in the grafana service's environment"
        return environ[name]
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$(?!__)([A-Za-z_][A-Za-z0-9_]*)", sub, text)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("render")
    return {env: render.render(env, out_dir=root / env, secrets_dir=root / "secrets" / env, overrides=over)
            for env, over in GRAFANA_CASES.items()}


def grafana_services(result) -> dict[str, dict]:
    return {target: yaml.safe_load(result.files[target].read_text())["services"]["grafana"]
            for target in ("compose.yaml", "stack.yaml")}


# -- the files ------------------------------------------------------------------------------------
def test_every_file_parses_and_nothing_else_is_there():
    files = sorted(p.relative_to(PROV).as_posix() for p in PROV.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert files == ["dashboards/districts.json", "dashboards/overview.json", "dashboards/provider.yaml",
                     "dashboards/service-health.json", "datasources/influxdb.yaml", "generate.py"]
    assert datasource() and provider() and len(dashboards()) == 3


def test_datasource_has_the_fields_grafana_requires():
    doc = datasource()
    assert doc["apiVersion"] == 1 and doc["prune"] is True
    assert all({"name", "orgId"} <= set(d) for d in doc["deleteDatasources"])
    (ds,) = doc["datasources"]
    assert ds["uid"] == "iot-influxdb" and ds["type"] == "influxdb" and ds["access"] == "proxy"
    assert {"name", "url", "database", "user"} <= set(ds)
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["jsonData"]["dbName"] == ds["database"]
    assert ds["editable"] is False


# The datasources the course's labs made by hand in Grafana's UI: the English course's kept Grafana's
# default name for an InfluxDB datasource, the French lab's "le nom de la data source est influx".
HAND_MADE = {"InfluxDB", "influx"}


def test_the_hand_made_datasources_of_the_course_are_deleted():
    doc = datasource()
    deleted = {d["name"] for d in doc["deleteDatasources"] if d["orgId"] == 1}
    assert HAND_MADE <= deleted, f"not deleted: {sorted(HAND_MADE - deleted)}"
    assert not deleted & {d["name"] for d in doc["datasources"]}  # never ours


def test_no_plaintext_password_anywhere(rendered):
    ds = datasource()["datasources"][0]
    assert ds["secureJsonData"] == {"password": f"$__file{{{READER_SECRET}}}"}
    assert not {"password", "basicAuthPassword"} & set(ds)
    # and no value of any generated secret in any provisioning file
    values = {p.read_text().strip() for r in rendered.values() for p in r.secrets.values()}
    for path in PROV.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not [v for v in values if v and v in text], path
            assert not re.search(r"(?i)admin/admin|password\s*[:=]\s*['\"]?(?!\$__file)\w", text), path


def test_provider_has_the_fields_grafana_requires_and_updates_are_decided():
    doc = provider()
    assert doc["apiVersion"] == 1
    (p,) = doc["providers"]
    assert p["type"] == "file" and p["folder"] and p["options"]["path"]
    assert p["allowUiUpdates"] is False and p["disableDeletion"] is True  # the JSON here is the truth
    assert "allowUiUpdates: false --" in PROVIDER_FILE.read_text()  # documented where it is set


def test_dashboards_reference_the_datasource_by_uid_and_resolve():
    uid = datasource()["datasources"][0]["uid"]
    seen = set()
    for name, board in dashboards().items():
        text = (PROV / "dashboards" / name).read_text()
        assert "${DS_" not in text and "__inputs" not in board, name  # file provisioning resolves neither
        assert board["uid"] and board["uid"] not in seen and board["title"]
        seen.add(board["uid"])
        refs = [p["datasource"] for p in board["panels"]] + [t["datasource"] for p in board["panels"]
                                                             for t in p["targets"]]
        refs += [v["datasource"] for v in board["templating"]["list"]]
        assert refs and all(r == {"type": "influxdb", "uid": uid} for r in refs), name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        variables = {v["name"] for v in board["templating"]["list"]}
        for p in board["panels"]:
            assert p.get("repeat") in (None, *variables), p["title"]
            for t in p["targets"]:
                used = set(re.findall(r"\$(\w+)", t["query"])) - {"timeFilter", "__interval", "__interval_ms"}
                assert used <= variables, f"{name} {p['title']}: undefined {used - variables}"


def test_overview_has_what_the_issue_asks_for():
    board = dashboards()["overview.json"]
    titles = [p["title"] for p in board["panels"]]
    assert {"$type per sensor", "Latest value per sensor", "Readings per minute", "Active sensors (last 5 min)",
            "Top 10 sensors: highest $type", "Time since last seen"} <= set(titles)
    for var in board["templating"]["list"]:
        assert var["multi"] and var["includeAll"], var["name"]


def test_districts_has_what_the_issue_asks_for():
    """Issue 12 item 6: variables Type and District, mean per district over time, the latest
    mean/min/max/n per district, stations reporting (n); all from the processor's aggregates."""
    board = dashboards()["districts.json"]
    assert (board["uid"], board["title"]) == ("iot-districts", "Toulouse districts")
    kind, district = board["templating"]["list"]
    assert (kind["name"], kind["label"], district["name"], district["label"]) == ("type", "Type", "district", "District")
    # One type at a time (their units differ), any set of districts.
    assert not kind["multi"] and not kind["includeAll"] and kind["current"]["value"] == "temp"
    assert district["multi"] and district["includeAll"] and district["allValue"] == ".*"
    assert 'FROM "district"' in kind["query"] and 'FROM "district"' in district["query"]
    panels = {p["title"]: p for p in board["panels"]}
    assert set(panels) == {"Mean $type per district", "Latest per district", "Stations reporting (n) per district",
                           "Stations reporting (latest)"}
    for p in board["panels"]:
        (t,) = p["targets"]
        assert '"type" =~ /^$type$/ AND "district" =~ /^$district$/ AND $timeFilter' in t["query"], p["title"]
    mean = panels["Mean $type per district"]["targets"][0]
    assert 'mean("mean")' in mean["query"] and mean["query"].endswith('"district" fill(none)')
    assert mean["alias"] == "$tag_district"
    latest = panels["Latest per district"]
    assert latest["targets"][0]["resultFormat"] == "table"
    assert 'SELECT "mean", "min", "max", "n"' in latest["targets"][0]["query"]
    assert 'GROUP BY "district" ORDER BY time DESC LIMIT 1' in latest["targets"][0]["query"]
    assert [t["id"] for t in latest["transformations"]] == ["merge", "organize", "sortBy"]
    assert '"n"' in panels["Stations reporting (n) per district"]["targets"][0]["query"]
    # The measurement is the one docs/mqtt.md says the historian stores the aggregates in.
    assert "Aggregates: measurement `district`, tags `district`, `type`, fields `mean`, `min`, `max`, `n`" in \
        (ROOT / "docs" / "mqtt.md").read_text()


def test_committed_dashboards_are_the_generated_ones():
    generated = generator().generate()
    assert sorted(generated) == [p.name for p in DASHBOARD_FILES]
    for name, text in generated.items():
        assert (PROV / "dashboards" / name).read_text() == text, f"{name} is stale: run grafana-provisioning/generate.py"


def test_dashboards_query_the_measurement_of_every_env():
    for env in render.list_envs():
        measurement = render.load_values(env)["influxdb"]["measurement"]
        for name, board in dashboards().items():
            # The districts' board reads the processor's aggregates (a fixed measurement, docs/mqtt.md).
            want = "district" if name == "districts.json" else measurement
            for p in board["panels"]:
                for t in p["targets"]:
                    assert f'FROM "{want}"' in t["query"], f"{env}: {name} {p['title']}"


# -- the wiring into the stacks -------------------------------------------------------------------
@pytest.mark.parametrize("env", sorted(GRAFANA_CASES))
def test_datasource_url_database_user_equal_the_values(rendered, env):
    values = render.load_values(env, GRAFANA_CASES[env])
    for target, svc in grafana_services(rendered[env]).items():
        expanded = yaml.safe_load(grafana_expand(DATASOURCE_FILE.read_text(), svc["environment"]))
        ds = expanded["datasources"][0]
        assert ds["url"] == f"http://influxdb:{values['influxdb']['port']}", target
        assert ds["database"] == ds["jsonData"]["dbName"] == values["influxdb"]["db"], target
        assert ds["user"] == values["influxdb"]["users"]["reader"], target
        assert "influxdb_reader_password" in {s["target"] for s in svc["secrets"]}, target  # what $__file reads
        assert svc["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"


def test_compose_mounts_the_provisioning_where_the_provider_looks(rendered):
    result = rendered["dev"]
    svc = grafana_services(result)["compose.yaml"]
    binds = {m["target"]: (result.out_dir / m["source"]).resolve() for m in svc["volumes"] if m["type"] == "bind"}
    assert all(m.get("read_only") for m in svc["volumes"] if m["type"] == "bind")
    path = provider()["providers"][0]["options"]["path"]
    assert binds[path] == (PROV / "dashboards").resolve()
    assert binds[f"{render.GRAFANA_PROVISIONING_TARGET}/datasources"] == (PROV / "datasources").resolve()
    assert svc["environment"]["GF_PATHS_PROVISIONING"] == render.GRAFANA_PROVISIONING_TARGET


def test_stack_ships_every_file_as_a_hashed_config_where_the_provider_looks(rendered):
    result = rendered["prod"]
    doc = yaml.safe_load(result.files["stack.yaml"].read_text())
    svc = doc["services"]["grafana"]
    path = provider()["providers"][0]["options"]["path"]
    targets = {c["target"]: c["source"] for c in svc["configs"]}
    for board in DASHBOARD_FILES + [PROVIDER_FILE]:
        assert f"{path}/{board.name}" in targets
    assert f"{render.GRAFANA_PROVISIONING_TARGET}/datasources/influxdb.yaml" in targets
    for target, source in targets.items():
        cfg = doc["configs"][source]
        local = (result.out_dir / cfg["file"]).resolve()
        assert local.name == PurePosixPath(target).name and local.is_file()
        assert cfg["name"] == f"{result.stack_name}_{source}_{render.secrets_mod.content_hash(local)}"
        assert len(cfg["name"]) <= 64  # Swarm's limit on object names
    assert svc["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_a_changed_dashboard_is_a_new_config(tmp_path, monkeypatch):
    copy = tmp_path / "grafana-provisioning"
    shutil.copytree(PROV, copy)
    monkeypatch.setattr(render, "GRAFANA_PROVISIONING", copy)
    before = render.render("dev", out_dir=tmp_path / "a", secrets_dir=tmp_path / "s").swarm_config_names
    (copy / "dashboards" / "overview.json").write_text("{}\n")
    after = render.render("dev", out_dir=tmp_path / "b", secrets_dir=tmp_path / "s").swarm_config_names
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"gf_dashboard_overview"}


def test_anonymous_access_is_off_unless_asked_and_then_read_only(tmp_path):
    on = render.render("dev", out_dir=tmp_path / "on", secrets_dir=tmp_path / "s",
                       overrides={"grafana.anonymous_viewers": True})
    for svc in grafana_services(on).values():
        assert svc["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
        assert svc["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    off = render.render("dev", out_dir=tmp_path / "off", secrets_dir=tmp_path / "s")
    for svc in grafana_services(off).values():
        assert svc["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
        assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in svc["environment"]
    assert render.load_values("dev")["grafana"]["anonymous_viewers"] is False


def test_grafana_image_is_the_pinned_official_one(rendered):
    for svc in grafana_services(rendered["dev"]).values():
        assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", svc["image"])
