"""ops/cluster/registry.py, the registry of local clusters, without a Docker engine: the commands it builds, the
`--set` values a deploy needs, the push sequence (against a recording stand-in `docker`), and the smoke
test of ops/swarm.py going through several node URLs in turn (host-mode ports answer on some nodes only).
"""
from __future__ import annotations

import ipaddress
import json
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from ops import cluster, render, swarm, values

ROOT = Path(__file__).resolve().parents[2]

SUBNET = ipaddress.ip_network("10.213.5.0/24")


def test_registry_sits_at_dot_2_of_the_cluster_subnet_and_publishes_on_loopback_only():
    ip = cluster.registry_ip(SUBNET)
    assert ip == "10.213.5.2"
    assert ip not in {"10.213.5.1", cluster.node_ip(SUBNET, 0)}  # not the gateway, not a node
    cmd = cluster.registry_run_command("demo", ip, extra_labels=["iot.test.run=x"])
    joined = " ".join(cmd)
    for flags in ("--name iotc-demo-registry", "--label iot.cluster=demo --label iot.test.run=x",
                  "--label iot.cluster.role=registry", "--network iotc-demo --ip 10.213.5.2",
                  "--publish 127.0.0.1::5000"):
        assert flags in joined
    assert cmd[-1] == cluster.REGISTRY_IMAGE
    assert [a for a in cmd if a.startswith(("0.0.0.0", ":5000", "5000"))] == []


def test_nodes_trust_the_registry_as_insecure():
    cmd = cluster.node_run_command("demo", "demo-w1", "worker", "10.213.5.12", insecure_registry="10.213.5.2:5000")
    image_at = cmd.index(cluster.DIND_IMAGE)
    assert cmd[image_at + 1:] == ["--group", "root", "-H", "unix:///var/run/docker.sock",
                                  "--insecure-registry", "10.213.5.2:5000"]
    assert "--insecure-registry" not in cluster.node_run_command("demo", "demo-w1", "worker", "10.213.5.12")


def test_deploy_sets_prefix_our_images_and_the_pushed_bases():
    assert cluster.deploy_sets("10.213.5.2:5000/", {"influxdb": "iot-base/influxdb:1.6.7", "grafana": None},
                               "offline", ["iot/api:0.1.0", "iot-base/influxdb:1.6.7"]) == [
        "registry=10.213.5.2:5000/", "bases.offline.influxdb=10.213.5.2:5000/iot-base/influxdb:1.6.7"]
    # a base that was not pushed (not built here) is left as it is
    assert cluster.deploy_sets("10.213.5.2:5000/", {"influxdb": "influxdb:1.12"}, "online",
                               ["iot/api:0.1.0"]) == ["registry=10.213.5.2:5000/"]


@pytest.mark.parametrize("env", values.list_envs())
def test_the_images_a_cluster_gets_are_those_the_rendered_stack_runs(env, tmp_path):
    """cluster.create names the images from the values alone; a real render of the env must agree."""
    refs, bases, mode = cluster.stack_images(values.load_values(env))
    result = render.render(env, out_dir=tmp_path / "out", secrets_dir=tmp_path / "secrets")
    stack = yaml.safe_load((tmp_path / "out" / "stack.yaml").read_text())
    assert sorted(refs) == sorted({service["image"] for service in stack["services"].values()})
    assert bases == {key: ref for key, ref in result.bases.items() if ref in refs}
    assert refs[:4] == [result.images[name] for name in ("api", "simulator", "broker", "web")]
    assert mode == values.load_values(env)["bases"]["mode"] and "device" not in " ".join(refs)


def test_cluster_lines_print_the_deploy_command_with_the_registry():
    c = cluster.Cluster("demo", "local", [cluster.Node("demo-m1", "manager", "10.213.5.11", [])], "demo-m1",
                        "iot-demo", None, registry="10.213.5.2:5000/", deploy_sets=["registry=10.213.5.2:5000/"])
    text = "\n".join(c.lines())
    assert "DOCKER_CONTEXT=iot-demo ./iot deploy --env ENV --set registry=10.213.5.2:5000/" in text


def test_unknown_distribution_is_refused_before_anything_runs():
    with pytest.raises(cluster.ClusterError, match="registry, load"):
        cluster.create_local("demo", distribution="scp")


STAND_IN = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    with open(os.environ["REC_LOG"], "a") as log:
        log.write(json.dumps(sys.argv[1:]) + "\\n")
    sys.exit(1 if sys.argv[1:2] == ["push"] and "fail" in sys.argv[-1] else 0)
    """)


@pytest.fixture
def docker_log(stand_ins):
    return stand_ins(STAND_IN, "docker")


def test_push_tags_pushes_then_drops_only_the_temporary_tags(docker_log):
    refs = ["iot/api:0.1.0", "iot-base/influxdb:1.6.7"]
    cluster.push_images("127.0.0.1:32770", refs, lambda _m: None)
    calls = docker_log()
    assert calls[:2] == [["tag", "iot/api:0.1.0", "127.0.0.1:32770/iot/api:0.1.0"],
                         ["tag", "iot-base/influxdb:1.6.7", "127.0.0.1:32770/iot-base/influxdb:1.6.7"]]
    assert sorted(calls[2:4]) == [["push", "--quiet", "127.0.0.1:32770/iot-base/influxdb:1.6.7"],
                                  ["push", "--quiet", "127.0.0.1:32770/iot/api:0.1.0"]]
    assert calls[4:] == [["rmi", "127.0.0.1:32770/iot/api:0.1.0", "127.0.0.1:32770/iot-base/influxdb:1.6.7"]]


def test_a_failed_push_still_drops_the_temporary_tags(docker_log):
    with pytest.raises(cluster.ClusterError, match="push"):
        cluster.push_images("127.0.0.1:32770", ["iot/fail:1"], lambda _m: None)
    assert docker_log()[-1] == ["rmi", "127.0.0.1:32770/iot/fail:1"]


def test_nothing_to_push_runs_nothing(docker_log):
    assert cluster.push_images("127.0.0.1:32770", [], lambda _m: None) == 0.0
    assert docker_log() == []


# -- ops/swarm.py: the smoke test through several node URLs ------------------------------------------
class FakeApi(BaseHTTPRequestHandler):
    stored: set[str] = set()

    def log_message(self, *_args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeApi.stored.add(body["sensor_id"])
        self.send_response(201)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        sensor = self.path.split("sensor_id=")[-1]
        data = json.dumps({"count": int(sensor in FakeApi.stored)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_smoke_test_goes_through_the_next_url_when_one_node_does_not_answer():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        urls = f"http://127.0.0.1:{closed_port()},http://127.0.0.1:{server.server_address[1]}/"
        messages: list[str] = []
        sensor = swarm.smoke_test(urls, "w", "r", timeout=10, progress=messages.append)
        assert sensor in FakeApi.stored
        assert f"through http://127.0.0.1:{server.server_address[1]}" in messages[-1]
    finally:
        server.shutdown()


def test_smoke_test_failure_names_every_url():
    a, b = closed_port(), closed_port()
    with pytest.raises(swarm.SwarmError, match=f"127.0.0.1:{a}, http://127.0.0.1:{b}"):
        swarm.smoke_test(f"http://127.0.0.1:{a},http://127.0.0.1:{b}", "w", "r", timeout=1.5)
