"""ops/cluster/ without a Docker engine: the commands it builds, and the SSH and Docker Machine paths
run against recording stand-ins.

The Docker Machine and SSH paths cannot create VMs or reach remote hosts here (no hypervisor, no cloud
account, no other hosts): recording stand-ins for `docker-machine` and `docker`, put first on PATH,
log every argv and answer the few queries with canned output; the tests assert the exact sequence.
The local driver runs the same way (a stand-in `docker`) to prove that `./iot --dry cluster.create`
prints the very commands the real `cluster.create` runs.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ops import cluster
from ops.run import read_record as run_record

ROOT = Path(__file__).resolve().parents[2]

STAND_IN = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    argv = [os.path.basename(sys.argv[0])] + sys.argv[1:]
    with open(os.environ["REC_LOG"], "a") as log:
        log.write(json.dumps(argv) + "\\n")
    args = sys.argv[1:]
    if argv[0] == "docker-machine":
        if args[0] == "ip":
            print("192.0.2." + str(10 + int(args[1][-1]) + (10 if "-w" in args[1] else 0)))
        elif args[0] == "config":
            d = "/m/" + args[1]
            print('--tlsverify --tlscacert="%s/ca.pem" --tlscert="%s/cert.pem" --tlskey="%s/key.pem" '
                  '-H=tcp://192.0.2.99:2376' % (d, d, d))
        elif args[0] == "ls":
            print("demo-m1\\ndemo-w1\\nother-m1\\ndemo-mx")
        sys.exit(0)
    if args[:2] == ["--context", args[1]] and len(args) > 2:
        ctx, rest = args[1], args[2:]
        if rest[:3] == ["swarm", "join-token", "-q"]:
            print("TOKEN-" + rest[3].upper())
        elif rest[:1] == ["info"] and "{{{{.Swarm.NodeID}}}}" in rest:
            print("ID-" + ctx)
        elif rest[:1] == ["info"]:
            print("20.10.24")
        elif rest[:2] == ["node", "ls"]:
            n = int(os.environ.get("REC_NODES", "3"))
            for i in range(n):
                print(json.dumps({{"Hostname": "n%d" % i, "Status": "Ready"}}))
    elif args[:2] == ["context", "ls"]:
        print(os.environ.get("REC_CONTEXTS", ""))
    """)


@pytest.fixture
def recorder(stand_ins):
    """Stand-ins for docker and docker-machine first on PATH; returns a function reading the log."""
    return stand_ins(STAND_IN, "docker", "docker-machine")


def quiet(_message: str) -> None:
    pass


# -- local driver: pure command builders ------------------------------------------------------------
def test_node_run_command_has_the_flags_that_work_without_privileged():
    cmd = cluster.node_run_command("demo", "demo-m1", "manager", "10.213.5.11", host_socket_dir=Path("/s/demo"),
                                   extra_labels=["iot.test.run=x"])
    assert "--privileged" not in cmd
    joined = " ".join(cmd)
    for flags in ("--cap-add ALL --cap-drop SYS_RESOURCE", "--security-opt seccomp=unconfined",
                  "--security-opt systempaths=unconfined", "--device-cgroup-rule a *:* rwm",
                  "--network iotc-demo --ip 10.213.5.11",
                  "--mount type=volume,source=iotc-demo-m1-docker,target=/var/lib/docker",
                  "--label iot.cluster=demo --label iot.test.run=x --label iot.cluster.role=manager",
                  "--mount type=bind,source=/s/demo,target=/run/iot-host"):
        assert flags in joined
    image_at = cmd.index(cluster.DIND_IMAGE)
    # dockerd's own arguments: root-only sockets, the second one in the folder shared with the host
    assert cmd[image_at + 1:] == ["--group", "root", "-H", "unix:///var/run/docker.sock",
                                  "-H", "unix:///run/iot-host/docker.sock"]
    assert not any(arg.startswith("tcp://") or arg in ("-p", "--publish") for arg in cmd)  # no TCP API


def test_workers_get_no_host_socket():
    cmd = cluster.node_run_command("demo", "demo-w1", "worker", "10.213.5.12")
    assert "/run/iot-host" not in " ".join(cmd)
    assert cmd[-4:] == ["--group", "root", "-H", "unix:///var/run/docker.sock"]


def test_node_names_and_resource_names():
    assert cluster.node_names("demo", 1, 2) == [("demo-m1", "manager"), ("demo-w1", "worker"), ("demo-w2", "worker")]
    assert cluster.container_name("demo", "demo-w2") == "iotc-demo-w2"
    assert cluster.volume_name("iotc-demo-w2") == "iotc-demo-w2-docker"
    with pytest.raises(cluster.ClusterError):
        cluster.node_names("demo", 0, 3)
    for bad in ("Demo", "1abc", "a b", "x" * 40, "a;rm"):
        with pytest.raises(cluster.ClusterError):
            cluster.check_name(bad)


def test_pick_subnet_skips_used_and_overlapping_networks():
    used = {ipaddress.ip_network("10.213.1.0/24"), ipaddress.ip_network("10.213.2.0/23"),
            ipaddress.ip_network("172.17.0.0/16")}
    assert cluster.pick_subnet(used) == ipaddress.ip_network("10.213.4.0/24")
    assert cluster.node_ip(ipaddress.ip_network("10.213.4.0/24"), 2) == "10.213.4.13"
    with pytest.raises(cluster.ClusterError):
        cluster.pick_subnet({ipaddress.ip_network("10.0.0.0/8")})


def test_network_create_command_fixes_subnet_and_gateway():
    cmd = cluster.network_create_command("demo", ipaddress.ip_network("10.213.7.0/24"), ["k=v"])
    assert cmd == ["docker", "network", "create", "--driver", "bridge", "--subnet", "10.213.7.0/24",
                   "--gateway", "10.213.7.1", "--label", "iot.cluster=demo", "--label", "k=v", "iotc-demo"]


def test_swarm_join_commands_use_the_role_token_and_the_first_managers_address():
    nodes = [cluster.Node("a", "manager", "10.0.0.1", ["D", "a"]), cluster.Node("b", "manager", "10.0.0.2", ["D", "b"]),
             cluster.Node("c", "worker", "10.0.0.3", ["D", "c"])]
    assert cluster.swarm_commands(nodes, {"manager": "TM", "worker": "TW"}) == [
        ["D", "b", "swarm", "join", "--token", "TM", "--advertise-addr", "10.0.0.2", "10.0.0.1:2377"],
        ["D", "c", "swarm", "join", "--token", "TW", "--advertise-addr", "10.0.0.3", "10.0.0.1:2377"]]


# -- SSH hosts (docker contexts) ---------------------------------------------------------------------
def test_host_address():
    assert cluster.host_address("ops@node1.example.org") == "node1.example.org"
    assert cluster.host_address("ops@203.0.113.5:2222") == "203.0.113.5"
    assert cluster.host_address("ops@[2001:db8::1]:22") == "2001:db8::1"


def test_create_ssh_runs_the_exact_command_sequence(recorder):
    hosts = ["ops@203.0.113.1", "ops@203.0.113.2", "ops@203.0.113.3"]
    result = cluster.create_ssh("demo", hosts, managers=1, progress=quiet, db_node=1)
    ctx = ["iot-demo-1", "iot-demo-2", "iot-demo-3"]
    assert recorder() == [
        ["docker", "context", "create", ctx[0], "--description", "iot cluster demo (ssh, manager)",
         "--docker", "host=ssh://ops@203.0.113.1"],
        ["docker", "context", "create", ctx[1], "--description", "iot cluster demo (ssh, worker)",
         "--docker", "host=ssh://ops@203.0.113.2"],
        ["docker", "context", "create", ctx[2], "--description", "iot cluster demo (ssh, worker)",
         "--docker", "host=ssh://ops@203.0.113.3"],
        *[["docker", "--context", c, "info", "--format", "{{.ServerVersion}}"] for c in ctx],
        ["docker", "--context", ctx[0], "swarm", "init", "--advertise-addr", "203.0.113.1"],
        ["docker", "--context", ctx[0], "swarm", "join-token", "-q", "manager"],
        ["docker", "--context", ctx[0], "swarm", "join-token", "-q", "worker"],
        ["docker", "--context", ctx[1], "swarm", "join", "--token", "TOKEN-WORKER", "--advertise-addr", "203.0.113.2",
         "203.0.113.1:2377"],
        ["docker", "--context", ctx[2], "swarm", "join", "--token", "TOKEN-WORKER", "--advertise-addr", "203.0.113.3",
         "203.0.113.1:2377"],
        ["docker", "--context", ctx[0], "info", "--format", "{{.Swarm.NodeID}}"],
        ["docker", "--context", ctx[0], "node", "update", "--label-add", "iot.influxdb=true", "--label-add", "iot.mqtt=true",
         "ID-iot-demo-1"],
        ["docker", "--context", ctx[0], "node", "ls", "--format", "{{json .}}"],
    ]
    assert result.context == "iot-demo-1"
    assert "docker --context iot-demo-1 node ls" in "\n".join(result.lines())


def test_create_ssh_two_managers_and_a_worker_database_node(recorder):
    cluster.create_ssh("demo", ["a@h1", "a@h2", "a@h3"], managers=2, progress=quiet, db_node=3)
    calls = recorder()
    joins = [c for c in calls if "join" in c and "--token" in c]
    assert [c[c.index("--token") + 1] for c in joins] == ["TOKEN-MANAGER", "TOKEN-WORKER"]
    assert ["docker", "--context", "iot-demo-3", "info", "--format", "{{.Swarm.NodeID}}"] in calls
    assert calls[-2][-1] == "ID-iot-demo-3"


def test_ssh_hosts_must_name_a_user_and_managers_must_fit():
    with pytest.raises(cluster.ClusterError, match="user@host"):
        cluster.ssh_nodes("demo", ["h1"])
    with pytest.raises(cluster.ClusterError, match="--managers"):
        cluster.ssh_nodes("demo", ["a@h1"], managers=2)


def test_rm_contexts_leaves_workers_first_then_removes_the_contexts(recorder, monkeypatch):
    rows = [{"Name": "iot-demo-1", "Description": "iot cluster demo (ssh, manager)", "DockerEndpoint": "ssh://a@h1"},
            {"Name": "iot-demo-2", "Description": "iot cluster demo (ssh, worker)", "DockerEndpoint": "ssh://a@h2"},
            {"Name": "default", "Description": "Current DOCKER_HOST", "DockerEndpoint": "unix:///x"},
            {"Name": "iot-demo2-1", "Description": "iot cluster demo2 (ssh, manager)", "DockerEndpoint": "ssh://b@h"}]
    monkeypatch.setenv("REC_CONTEXTS", "\n".join(json.dumps(r) for r in rows))
    assert cluster.rm_contexts("demo", quiet) == ["iot-demo-2", "iot-demo-1"]
    assert recorder()[1:] == [
        ["docker", "--context", "iot-demo-2", "swarm", "leave", "--force"],
        ["docker", "--context", "iot-demo-1", "swarm", "leave", "--force"],
        ["docker", "context", "rm", "--force", "iot-demo-2"],
        ["docker", "context", "rm", "--force", "iot-demo-1"],
    ]


# -- Docker Machine (a recording stand-in: no VM can be created here) ---------------------------------
def test_parse_machine_config():
    text = '--tlsverify --tlscacert="/m/a b/ca.pem" --tlscert="/m/cert.pem" --tlskey="/m/key.pem" -H=tcp://192.0.2.1:2376'
    assert cluster.parse_machine_config(text) == {"ca": "/m/a b/ca.pem", "cert": "/m/cert.pem", "key": "/m/key.pem",
                                                  "host": "tcp://192.0.2.1:2376"}
    with pytest.raises(cluster.ClusterError):
        cluster.parse_machine_config("--tlsverify")


def test_create_machine_runs_the_exact_command_sequence(recorder):
    """Against the recording stand-in `docker-machine` (and `docker`): it cannot create VMs here."""
    result = cluster.create_machine("demo", "digitalocean", managers=1, workers=1, progress=quiet,
                                    options=["--digitalocean-size=s-1vcpu-1gb"])

    def ctx_create(node, ctx, role):
        d = f"/m/{node}"
        return ["docker", "context", "create", ctx, "--description", f"iot cluster demo (machine digitalocean, {role})",
                "--docker", f"host=tcp://192.0.2.99:2376,ca={d}/ca.pem,cert={d}/cert.pem,key={d}/key.pem"]
    assert recorder() == [
        ["docker-machine", "create", "--driver", "digitalocean", "--digitalocean-size=s-1vcpu-1gb", "demo-m1"],
        ["docker-machine", "ip", "demo-m1"],
        ["docker-machine", "config", "demo-m1"],
        ctx_create("demo-m1", "iot-demo-m1", "manager"),
        ["docker-machine", "create", "--driver", "digitalocean", "--digitalocean-size=s-1vcpu-1gb", "demo-w1"],
        ["docker-machine", "ip", "demo-w1"],
        ["docker-machine", "config", "demo-w1"],
        ctx_create("demo-w1", "iot-demo-w1", "worker"),
        ["docker", "--context", "iot-demo-m1", "swarm", "init", "--advertise-addr", "192.0.2.11"],
        ["docker", "--context", "iot-demo-m1", "swarm", "join-token", "-q", "manager"],
        ["docker", "--context", "iot-demo-m1", "swarm", "join-token", "-q", "worker"],
        ["docker", "--context", "iot-demo-w1", "swarm", "join", "--token", "TOKEN-WORKER", "--advertise-addr",
         "192.0.2.21", "192.0.2.11:2377"],
        ["docker", "--context", "iot-demo-m1", "info", "--format", "{{.Swarm.NodeID}}"],
        ["docker", "--context", "iot-demo-m1", "node", "update", "--label-add", "iot.influxdb=true", "--label-add",
         "iot.mqtt=true", "ID-iot-demo-m1"],
        ["docker", "--context", "iot-demo-m1", "node", "ls", "--format", "{{json .}}"],
    ]
    assert result.context == "iot-demo-m1"


def test_rm_machine_removes_only_this_clusters_machines(recorder):
    cluster.rm_machine("demo", quiet)
    machine_calls = [c for c in recorder() if c[0] == "docker-machine"]
    assert machine_calls == [["docker-machine", "ls", "-q"], ["docker-machine", "rm", "-y", "demo-m1", "demo-w1"]]


def test_without_docker_machine_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(cluster.ClusterError, match="docker-machine is not installed"):
        cluster.create_machine("demo", "virtualbox", progress=quiet)


def test_task_without_docker_machine_exits_with_one_line(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{Path(sys.executable).parent}"}
    proc = subprocess.run([sys.executable, "-m", "invoke", "cluster.create", "--driver", "virtualbox", "--name", "demo"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: docker-machine is not installed")


# -- ssh and machine: `--dry` records what the real run records ----------------------------------------
def recorded(tmp_path: Path, mode: str, *args: str) -> list[list[str]]:
    """Run `./iot [--dry] ARGS` (the stand-ins first on PATH) with IOT_RECORD_COMMANDS; the commands it echoed."""
    from ops import run as ops_run

    record = tmp_path / f"{mode}.jsonl"
    proc = subprocess.run([sys.executable, "-m", "ops.cli", *(["--dry"] if mode == "dry" else []), *args], cwd=ROOT,
                          env={**os.environ, ops_run.RECORD_ENV: str(record)}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ops_run.read_record(record)


def filled(commands: list[list[str]], values: dict[str, str]) -> list[list[str]]:
    """The dry record with its run-time `<…>` values replaced by what the stand-ins answer."""
    return [[cluster.fill(arg, values) for arg in cmd] for cmd in commands]


def test_ssh_dry_records_what_the_real_create_records(recorder, tmp_path):
    """plan_ssh is what create_ssh runs: the same commands, in order, the join tokens *** in both (never
    recorded), only the node id (read at run time) written <…> in the dry run."""
    args = ["cluster.create", "--ssh", "ops@203.0.113.1", "--ssh", "ops@203.0.113.2", "--ssh", "ops@203.0.113.3",
            "--managers", "2", "--db-node", "3", "--name", "demo"]
    dry = recorded(tmp_path, "dry", *args)
    assert recorder() == []  # the dry run asked nothing of docker
    real = recorded(tmp_path, "real", *args)
    assert filled(dry, {"iot-demo-3 node id": "ID-iot-demo-3"}) == real
    assert ["docker", "--context", "iot-demo-3", "swarm", "join", "--token", "***", "--advertise-addr", "203.0.113.3",
            "203.0.113.1:2377"] in real and "TOKEN" not in json.dumps(real)
    made = recorder()
    assert [c for c in made if "join-token" not in c and "ls" not in c] == \
        [[a.replace("***", "TOKEN-MANAGER" if "203.0.113.2" in c else "TOKEN-WORKER") for a in c] for c in real]


def test_machine_dry_records_what_the_real_create_records(recorder, tmp_path):
    """plan_machine is what create_machine runs (against the stand-in docker-machine: no VM here): the machines'
    addresses and TLS files, the node id are <…> in the dry run, filled from the stand-in's answers here."""
    args = ["cluster.create", "--driver", "digitalocean", "--workers", "1", "--name", "demo",
            "--option", "--digitalocean-size=s-1vcpu-1gb", "--option", "--digitalocean-access-token=DO-SECRET-42"]
    dry = recorded(tmp_path, "dry", *args)
    assert recorder() == []
    real = recorded(tmp_path, "real", *args)
    values = {"demo-m1 ip": "192.0.2.11", "demo-w1 ip": "192.0.2.21", "demo-m1 node id": "ID-iot-demo-m1"}
    for node in ("demo-m1", "demo-w1"):
        values |= {f"{node} tls host": "tcp://192.0.2.99:2376", f"{node} tls ca": f"/m/{node}/ca.pem",
                   f"{node} tls cert": f"/m/{node}/cert.pem", f"{node} tls key": f"/m/{node}/key.pem"}
    assert filled(dry, values) == real
    assert real[0] == ["docker-machine", "create", "--driver", "digitalocean", "--digitalocean-size=s-1vcpu-1gb",
                       "--digitalocean-access-token=***", "demo-m1"]  # the access token: neither shown nor recorded
    assert "DO-SECRET-42" not in json.dumps(dry + real)
    assert ["docker", "--context", "iot-demo-w1", "swarm", "join", "--token", "***", "--advertise-addr", "192.0.2.21",
            "192.0.2.11:2377"] in real
    assert [c for c in real if not any("***" in a for a in c) and c not in recorder()] == []
    assert [*real[0][:-2], "--digitalocean-access-token=DO-SECRET-42", "demo-m1"] in recorder()  # the machine got it


def test_dry_shows_where_the_run_time_values_come_from(recorder):
    plan = cluster.plan_machine("demo", "generic", managers=1, workers=0)
    said: list[str] = []
    plan.show(said.append)
    assert said[0] == "would run: docker-machine create --driver generic demo-m1"
    assert "  <demo-m1 ip>: from `docker-machine ip demo-m1`" in said
    assert any(line.startswith("  <worker join token>: ") and line.endswith("a secret: shown as ***") for line in said)
    assert said[said.index("known only at run time:") - 1].startswith("then: wait up to 120 s for 1 Ready node(s)")
    assert recorder() == []
    with pytest.raises(cluster.ClusterError, match="--db-node 4"):
        cluster.plan_ssh("demo", ["a@h1", "a@h2"], db_node=4)


# -- local driver: the --dry plan is the run's own sequence --------------------------------------------
LOCAL_STAND_IN = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["REC_LOG"], "a") as log:
        log.write(json.dumps(["docker", *args]) + "\\n")
    inner = args[2:] if args[:1] == ["exec"] else []   # docker exec CONTAINER docker ...: a node's engine
    exists = os.environ.get("REC_EXISTS")               # the name of a cluster that exists (for cluster.rm)
    if exists and "label=iot.cluster=" + exists in args:
        if args[:2] == ["ps", "-a"]:
            print(exists + "\\tiotc-" + exists + "-m1\\tmanager\\trunning\\tUp 1 minute")
        else:
            print({{"ps": "c1\\nc2", "volume": "iotc-" + exists + "-m1-docker", "network": "n1"}}[args[0]])
    elif exists and args == ["context", "ls", "--format", "{{{{.Name}}}}"]:
        print("default\\niot-" + exists)
    elif args[:1] == ["port"]:
        print(os.environ["REC_REGISTRY"])
    elif args[:1] == ["save"]:
        open(args[args.index("--output") + 1], "wb").write(b"images")
    elif inner[1:4] == ["swarm", "join-token", "-q"]:
        print("TOKEN-" + inner[4].upper())
    elif inner[1:2] == ["info"] and "{{{{.Swarm.NodeID}}}}" in inner:
        print("ID-" + args[1])
    elif inner[1:3] == ["node", "ls"]:
        for i in range(3):
            print(json.dumps({{"Hostname": "n%d" % i, "Status": "Ready"}}))
    """)  # anything else: no output, exit 0 (no networks, no clusters, every image present)
PUSHER = {"port", "tag", "push", "rmi"}  # the registry pushes: a thread of their own, overlapping the nodes' start


class RegistryV2(BaseHTTPRequestHandler):
    def log_message(self, *_args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (the pusher waits for /v2/ to answer 200)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def local_docker(stand_ins, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), RegistryV2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("REC_REGISTRY", f"127.0.0.1:{server.server_address[1]}")
    yield stand_ins(LOCAL_STAND_IN, "docker")
    server.shutdown()


def iot(*args: str, record: Path | None = None) -> str:
    env = {**os.environ, **({"IOT_RECORD_COMMANDS": str(record)} if record else {})}
    proc = subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("distribution", ["registry", "load"])
def test_dry_plan_is_the_sequence_the_real_create_runs(local_docker, distribution, tmp_path):
    """`./iot --dry cluster.create` prints ops.cluster.plan_local; the real task runs exactly those commands,
    in that order and nothing in between (against the stand-in docker: no engine is touched)."""
    name = f"unitdry{os.getpid()}"
    options = ["cluster.create", "--name", name, "--managers", "1", "--workers", "2", "--label", "iot.test.run=unit",
               "--distribution", distribution, "--image", "iot/api:0.1.0"]
    printed = iot("--dry", *options, record=tmp_path / "dry.jsonl").splitlines()
    assert local_docker() == [["docker", "network", "ls", "-q"]]  # --dry only asked which subnets are taken
    planned = [shlex.split(line.removeprefix("would run: ")) for line in printed if line.startswith("would run: ")]
    assert planned == run_record(tmp_path / "dry.jsonl")  # echoed through ops.run: recorded as the run's are
    assert [c[1:3] for c in planned] == [["network", "create"], *([["run", "-d"]] if distribution == "registry" else []),
                                         *[["volume", "create"], ["run", "-d"]] * 3]
    assert printed[len(planned):] == [line for line in printed if line.startswith("then: ")] != []
    try:
        out = iot(*options)
    finally:
        shutil.rmtree(cluster.socket_dir(name), ignore_errors=True)  # the real run made it; the stand-in made nothing
    assert f"cluster {name} (local): 1 manager(s), 2 worker(s)" in out
    calls = [c for c in local_docker()[1:] if c[1] not in PUSHER]
    start = calls.index(planned[0])
    assert calls[start:start + len(planned)] == planned
    assert calls[start + len(planned)][1:2] == ["exec"]  # then the nodes' engines: wait, swarm init, …
    pushes = [c for c in local_docker() if c[1] == "push"]
    assert pushes == ([["docker", "push", "--quiet", f"{os.environ['REC_REGISTRY']}/iot/api:0.1.0"]]
                      if distribution == "registry" else [])


def test_rm_dry_plan_is_what_rm_runs(local_docker, monkeypatch):
    """`./iot --dry cluster.rm` only asks (read-only) and prints the plan; `cluster.rm` runs exactly it."""
    name = f"unitrm{os.getpid()}"
    monkeypatch.setenv("REC_EXISTS", name)
    folder = cluster.socket_dir(name)
    folder.mkdir(parents=True)
    try:
        printed = iot("--dry", "cluster.rm", "--name", name).splitlines()
        asked = local_docker()
        assert folder.is_dir() and {c[1] for c in asked} == {"ps", "volume", "network", "context"}
        assert all(c[2] in ("-a", "-aq", "ls") for c in asked), asked  # ps -a, ps -aq, volume/network/context ls
        out = iot("cluster.rm", "--name", name).splitlines()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    planned = [shlex.split(line.removeprefix("would run: ")) for line in printed]
    assert planned == [["docker", "rm", "--force", "--volumes", "c1", "c2"],
                       ["docker", "volume", "rm", "--force", f"iotc-{name}-m1-docker"], ["docker", "network", "rm", "n1"],
                       ["docker", "context", "rm", "--force", f"iot-{name}"], ["rm", "-rf", "--", str(folder)]]
    ran = [c for c in local_docker()[len(asked):] if c not in asked]  # the run asks the same, then acts
    assert ran == planned[:-1]  # the last, rm -rf of the socket folder, is not docker's: it really ran
    assert not folder.exists()
    assert out == ["container c1", "container c2", f"volume iotc-{name}-m1-docker", f"network iotc-{name}",
                   f"context iot-{name}", f"folder {folder}"]
