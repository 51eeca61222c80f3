"""A 3-node swarm on this engine (`./iot cluster.create --driver local`): deploy, spread, node failure.

The nodes are Docker-in-Docker containers (images/dind) on a user network of their own, with the
cluster's registry (images/registry) on it; `cluster.create` pushes our images there and the nodes
pull them when a task needs one. The stack goes on through the same path as any other target:
`DOCKER_CONTEXT=iot-NAME ./iot deploy --env test --set registry=IP:5000/ …` (its own convergence
wait and smoke test). The test reaches the api through the nodes' addresses on that network (a
host-mode port: no IPVS here, so the test values use dnsrr endpoints and host-mode ports). Those
addresses are containers on this very machine, our own test hosts; nothing else is targeted.

One module-scoped cluster (~15 s to create), removed at the end whatever happens: by `cluster.rm`,
and by the session's run label (conftest.run_label) should that fail too.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from harness import call

from ops import cluster, images, render

ROOT = Path(__file__).resolve().parents[2]

ENV = "test"
STACK = "iot-test"
API_REPLICAS = 2  # on 3 nodes: when one goes, its replica has a node to go to (max 1 per node, host port)
pytestmark = pytest.mark.usefixtures("docker_engine")


def iot(*args: str, check: bool = True, timeout: float = 600, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(ROOT / "iot"), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False, env={**os.environ, **env} if env else None)
    if check and proc.returncode != 0:
        raise AssertionError(f"./iot {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def sh(*cmd: str, timeout: float = 120, check: bool = True) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


class Swarm:
    def __init__(self, name: str):
        self.name = name
        self.context = cluster.context_name(name)
        self.sets: list[str] = []  # the deploy's --set values cluster.create printed

    def docker(self, *args: str, **kw) -> str:
        return sh("docker", "--context", self.context, *args, **kw)

    def nodes(self) -> list[dict]:
        return [json.loads(line) for line in self.docker("node", "ls", "--format", "{{json .}}").splitlines()]

    def addresses(self) -> dict[str, str]:
        ids = [n["ID"] for n in self.nodes()]
        out = self.docker("node", "inspect", "--format", "{{.Description.Hostname}} {{.Status.Addr}}", *ids)
        return dict(line.split() for line in out.splitlines())

    def running(self, service: str) -> list[str]:
        """Nodes with a running task of SERVICE."""
        out = self.docker("service", "ps", f"{STACK}_{service}", "--filter", "desired-state=running",
                          "--format", "{{.Node}} {{.CurrentState}}")
        return sorted(line.split()[0] for line in out.splitlines() if " Running " in f"{line} ")


def wait_for(what: str, check, timeout: float = 120, every: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def ready(url: str) -> bool:
    try:
        return call("GET", f"{url}/readyz", timeout=2).status_code == 200
    except OSError:  # no answer yet (requests' errors are OSErrors)
        return False


@pytest.fixture(scope="module")
def swarm(offline_bases, run_label):
    name = f"e2e{uuid.uuid4().hex[:6]}"
    if not all(images.image_exists(t) for t in ("iot/api:0.1.0", "iot/simulator:0.1.0", "iot/mosquitto:0.1.0",
                                                "iot/web:0.1.0")):
        iot("build", "--env", ENV, timeout=1200)
    started = time.monotonic()
    try:
        out = iot("cluster.create", "--driver", "local", "--managers", "1", "--workers", "2", "--name", name,
                  "--env", ENV, "--label", run_label, timeout=600)
        print(f"cluster.create took {time.monotonic() - started:.1f} s\n{out.stdout}")
        timings = [line for line in out.stderr.splitlines() if "timings:" in line]
        print("\n".join(timings))
        swarm = Swarm(name)
        # the deploy's --set values, as cluster.create printed them
        deploy_line = next(line for line in out.stdout.splitlines() if line.startswith("deploy: "))
        words = deploy_line.split()
        swarm.sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
        yield swarm
    finally:
        iot("cluster.rm", "--name", name, check=False, timeout=300)
        if cluster.ls_local(name):  # belt and braces: the run label is removed by conftest too
            cluster.rm_local(name)


@pytest.fixture(scope="module")
def deployed(swarm, tmp_path_factory):
    registry = cluster.registry_address(swarm.name)
    assert registry and f"registry={registry}" in swarm.sets, (registry, swarm.sets)
    sets = [*swarm.sets, f"api.deploy.replicas={API_REPLICAS}"]
    overrides = render.parse_overrides(sets)
    port = render.load_values(ENV, overrides)["api"]["published_port"]
    addresses = swarm.addresses()
    # host-mode ports answer only where an api task runs, and where that is is Swarm's choice: the
    # smoke test goes to each node in turn (a comma-separated --url)
    urls = ",".join(f"http://{addresses[n]}:{port}" for n in sorted(addresses))
    args = ["deploy", "--env", ENV, *[x for s in sets for x in ("--set", s)], "--url", urls]
    started = time.monotonic()
    out = iot(*args, env={"DOCKER_CONTEXT": swarm.context}, timeout=900)
    print(f"./iot deploy took {time.monotonic() - started:.1f} s\n{out.stdout}")
    assert "every service converged, smoke test passed" in out.stdout, out.stdout
    assert "smoke test passed" in out.stderr
    for node in swarm.running("api"):
        wait_for(f"api ready on {node}", lambda n=node: ready(f"http://{addresses[n]}:{port}"), timeout=90)
    # the deploy's secrets (secrets/ENV, kept): the token the simulator needs
    result = render.render(ENV, out_dir=tmp_path_factory.mktemp("cluster-stack"), overrides=overrides)
    return result, port, registry


def test_three_nodes_ready_and_the_database_node_labelled(swarm):
    nodes = swarm.nodes()
    assert len(nodes) == 3
    assert all(n["Status"] == "Ready" for n in nodes), nodes
    assert sorted(n["ManagerStatus"] for n in nodes) == ["", "", "Leader"]
    labelled = swarm.docker("node", "inspect", "--format", "{{.Description.Hostname}} {{index .Spec.Labels \"iot.influxdb\"}}",
                            *[n["ID"] for n in nodes]).split("\n")
    assert sorted(line.split()[0] for line in labelled if line.endswith(" true")) == [f"{swarm.name}-m1"]
    # the images are in the cluster's registry (nothing can be pulled from the internet here), and
    # every node trusts it as an insecure registry
    registry = cluster.registry_address(swarm.name)
    host_port = cluster.registry_host_port(swarm.name)
    assert host_port.startswith("127.0.0.1:")
    answer = call("GET", f"http://{host_port}/v2/_catalog", timeout=5)
    answer.raise_for_status()
    catalog = answer.json()["repositories"]
    assert {"iot/api", "iot/simulator", "iot-base/influxdb"} <= set(catalog), catalog
    for node in nodes:
        container = cluster.container_name(swarm.name, node["Hostname"])
        insecure = sh("docker", "exec", container, "docker", "info", "--format",
                      "{{json .RegistryConfig.IndexConfigs}}")
        assert registry.rstrip("/") in json.loads(insecure), insecure
    # the temporary tags of the pushes are gone from this engine
    assert host_port not in sh("docker", "images", "--format", "{{.Repository}}")


def test_api_replicas_spread_across_nodes(swarm, deployed):
    _, _, registry = deployed
    api_nodes = swarm.running("api")
    assert len(api_nodes) == len(set(api_nodes)) == API_REPLICAS
    assert swarm.running("influxdb") == [f"{swarm.name}-m1"]  # pinned by the node label
    # the nodes pulled the images from the cluster's registry
    images = swarm.docker("service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                          f"{STACK}_api", f"{STACK}_influxdb").split()
    assert all(i.startswith(registry) for i in images), images
    for node in api_nodes:
        container = cluster.container_name(swarm.name, node)
        assert f"{registry}iot/api" in sh("docker", "exec", container, "docker", "images", "--format",
                                          "{{.Repository}}:{{.Tag}}")


def influx_count(swarm: Swarm, node: str, where: str) -> int:
    """Straight to InfluxDB's HTTP API from inside an api container (on the backend network), as the
    api's reader (its INFLUXDB_READER_* settings) when InfluxDB has auth on."""
    container = cluster.container_name(swarm.name, node)
    api = sh("docker", "exec", container, "docker", "ps", "-q", "--filter",
             f"label=com.docker.swarm.service.name={STACK}_api").split()[0]
    q = f'SELECT count("value") FROM "iot"."iot_rp"."data" {where}'
    # stdlib: the api's image has no requests
    script = ("import os, sys, urllib.parse, urllib.request; e = os.environ; q = {'q': sys.argv[1]}; "
              "pw = e.get('INFLUXDB_READER_PASSWORD_FILE'); "
              "q.update({'u': e['INFLUXDB_READER_USER'], 'p': open(pw).read().strip()} if pw else {}); "
              "print(urllib.request.urlopen('http://influxdb:8086/query?' + urllib.parse.urlencode(q)).read().decode())")
    out = sh("docker", "exec", container, "docker", "exec", api, "python3", "-c", script, q)
    series = json.loads(out).get("results", [{}])[0].get("series", [])
    return sum(row[1] for s in series for row in s["values"])


def test_worker_stopped_under_load_service_recovers_and_nothing_acknowledged_is_lost(swarm, deployed):
    result, port, _ = deployed
    addresses = swarm.addresses()
    api_nodes = swarm.running("api")
    victim = next(n for n in api_nodes if "-w" in n)          # a worker running an api replica
    survivor = next(n for n in api_nodes if n != victim)      # the simulator's target keeps running
    spare = next(n for n in addresses if n not in api_nodes)  # where the lost replica should go
    prefix = f"cl{uuid.uuid4().hex[:6]}-"
    token_file = result.secrets["simulator_token"]
    sim = subprocess.Popen([str(ROOT / ".venv" / "bin" / "iot-simulator"), "--url", f"http://{addresses[survivor]}:{port}",
                            "--token-file", str(token_file), "--devices", "10", "--interval", "0.2",
                            "--duration", "30", "--sensor-prefix", prefix, "--json", "--progress-interval", "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the simulator's first readings stored", timeout=60, every=0.5,
                 check=lambda: influx_count(swarm, survivor, f"WHERE \"sensor_id\" =~ /^{prefix}/") > 0)
        stopped = time.monotonic()
        sh("docker", "stop", cluster.container_name(swarm.name, victim), timeout=60)
        recovered = wait_for(f"the api replica of {victim} to run elsewhere",
                             lambda: (nodes := swarm.running("api")) == sorted([survivor, spare]) and nodes,
                             timeout=120)
        print(f"api recovered on {recovered} {time.monotonic() - stopped:.1f} s after `docker stop {victim}`")
        down = {n["Hostname"]: n["Status"] for n in swarm.nodes()}
        assert down[victim] == "Down"
        wait_for(f"api ready on {spare}", lambda: ready(f"http://{addresses[spare]}:{port}"), timeout=90)
        out, err = sim.communicate(timeout=120)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.communicate()
    summary = json.loads(out.strip().splitlines()[-1])
    assert sim.returncode == 0, err[-2000:]
    assert summary["generated"] > 500 and summary["stored"] == summary["generated"], summary
    # every reading acknowledged with 201 is in InfluxDB, counted on the cluster, once
    assert influx_count(swarm, survivor, f"WHERE \"sensor_id\" =~ /^{prefix}/") == summary["stored"]


def test_cluster_rm_removes_everything(swarm, deployed):
    # runs last in this module: the fixture's own cluster.rm then finds nothing left
    iot("cluster.rm", "--name", swarm.name, timeout=300)
    flt = f"label={cluster.LABEL}={swarm.name}"
    assert sh("docker", "ps", "-aq", "--filter", flt).split() == []
    assert sh("docker", "volume", "ls", "-q", "--filter", flt).split() == []
    assert sh("docker", "network", "ls", "-q", "--filter", flt).split() == []
    assert sh("docker", "ps", "-aq", "--filter", f"name=^{cluster.registry_container(swarm.name)}$").split() == []
    assert swarm.context not in sh("docker", "context", "ls", "--format", "{{.Name}}").split()
    assert not cluster.socket_dir(swarm.name).exists()
    assert cluster.ls_local(swarm.name) == []
