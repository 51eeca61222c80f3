"""The pure logic of ops/swarm.py: convergence from `docker service inspect` / task JSON, failure reasons,
Docker Machine variables, placement labels, targets, and which secrets/configs a rollback still needs."""
from __future__ import annotations

import json

import pytest

from ops import swarm

IMAGE = "iot/api:0.2.0"
CONTAINER = {"Image": IMAGE, "Env": ["A=1"], "Labels": {"iot.version": "0.2.0"},
             "Secrets": [{"SecretName": "iot-test_api_tokens_aaa"}]}


def service(replicas=2, update=None, previous=True, container=None, global_mode=False):
    spec = {"Name": "iot-test_api", "Labels": {"iot.version": "0.2.0"},
            "Mode": {"Global": {}} if global_mode else {"Replicated": {"Replicas": replicas}},
            "TaskTemplate": {"ContainerSpec": container or CONTAINER}}
    svc = {"ID": "svc1", "Spec": spec}
    if previous:
        svc["PreviousSpec"] = {"TaskTemplate": {"ContainerSpec": {
            **CONTAINER, "Image": "iot/api:0.1.0", "Secrets": [{"SecretName": "iot-test_api_tokens_old"}]}}}
    if update:
        svc["UpdateStatus"] = update
    return svc


def task(state="running", desired="running", image=IMAGE, err="", ts="2026-01-01T00:00:00Z", tid="t" * 25, **extra):
    container = {**CONTAINER, "Image": image, **extra}
    return {"ID": tid, "DesiredState": desired, "Spec": {"ContainerSpec": container},
            "Status": {"State": state, "Err": err, "Timestamp": ts, "Message": state}}


def test_converged_when_desired_replicas_run_the_current_spec():
    state = swarm.service_state(service(2, {"State": "completed", "StartedAt": "x"}),
                                [task(), task(image=IMAGE + "@sha256:abc")])
    assert (state.running, state.desired, state.update_state) == (2, 2, "completed")
    assert swarm.verdict(state, None) == "ok"


def test_tasks_of_the_previous_spec_or_not_yet_healthy_do_not_count():
    tasks = [task(image="iot/api:0.1.0"), task(state="starting"), task(state="shutdown", desired="shutdown"),
             task(Env=["A=2"])]
    state = swarm.service_state(service(2), tasks)
    assert state.running == 0
    assert swarm.verdict(state, None) == "pending"


@pytest.mark.parametrize(("update_state", "expected"), [
    ("updating", "pending"), ("rollback_started", "pending"), ("completed", "ok"),
    ("paused", "failed"), ("rollback_paused", "failed"), ("rollback_completed", "failed")])
def test_update_states(update_state, expected):
    state = swarm.service_state(service(1, {"State": update_state, "StartedAt": "t1"}), [task()])
    assert swarm.verdict(state, None) == expected


def test_an_old_rollback_that_this_deploy_did_not_cause_is_not_a_failure():
    state = swarm.service_state(service(1, {"State": "rollback_completed", "StartedAt": "t0"}), [task()])
    assert swarm.verdict(state, ("rollback_completed", "t0")) == "ok"
    assert swarm.verdict(state, ("completed", "t-1")) == "failed"


def test_global_services_need_every_scheduled_task_running():
    state = swarm.service_state(service(global_mode=True), [task(), task(state="starting")])
    assert state.mode == "global" and state.desired == 2 and swarm.verdict(state, None) == "pending"


def test_failure_reason_names_the_update_and_the_newest_task_errors():
    tasks = [task(state="failed", desired="shutdown", err="task: non-zero exit (1)", ts="2026-01-01T00:00:01Z",
                  tid="a" * 25),
             task(state="failed", desired="shutdown", err="unhealthy container", ts="2026-01-01T00:00:09Z",
                  tid="b" * 25),
             task(image="iot/api:0.1.0")]
    state = swarm.service_state(service(1, {"State": "rollback_completed", "StartedAt": "t",
                                            "Message": "rollback completed"}), tasks)
    reason = swarm.failure_reason(state)
    assert reason.startswith("update rollback_completed (rollback completed), 0/1 tasks running iot/api:0.2.0")
    assert reason.index("bbbbbbbbbbbb (iot/api:0.2.0) failed: unhealthy container") \
        < reason.index("aaaaaaaaaaaa (iot/api:0.2.0) failed: task:")


def test_a_completed_task_of_a_long_running_service_is_an_error_and_its_container_is_named():
    ended = task(state="complete", desired="shutdown", tid="c" * 25)
    ended["Status"]["ContainerStatus"] = {"ContainerID": "cid1"}
    state = swarm.service_state(service(1), [ended, task(state="shutdown", desired="shutdown")])
    assert state.errors == ["task cccccccccccc (iot/api:0.2.0) complete: complete"]
    assert state.containers == ["cid1"]
    assert state.ended_tasks == ["c" * 25]


def test_health_hint_gives_the_last_probe_line():
    health = {"Status": "unhealthy", "Log": [{"ExitCode": 1, "Output": "Traceback\n  ...\nURLError: refused\n"}]}

    assert swarm.health_hint(json.dumps(health)) == "health unhealthy: last probe exit 1: URLError: refused"
    assert swarm.health_hint("null") == "" and swarm.health_hint("") == ""


def test_health_hint_skips_the_probe_killed_as_the_container_stopped():
    health = {"Status": "unhealthy", "Log": [
        {"ExitCode": 1, "Output": "urllib.error.HTTPError: HTTP Error 503: Service Unavailable\n"},
        {"ExitCode": 137, "Output": ""}]}
    assert swarm.health_hint(json.dumps(health)) == (
        "health unhealthy: last probe exit 1: urllib.error.HTTPError: HTTP Error 503: Service Unavailable")
    only_killed = {"Status": "unhealthy", "Log": [{"ExitCode": 137, "Output": ""}]}
    assert swarm.health_hint(json.dumps(only_killed)) == "health unhealthy: last probe exit 137"


def test_log_hint_gives_the_last_error_of_our_json_logs():
    lines = [{"level": "info", "msg": "Uvicorn running on http://0.0.0.0:1337"},
             {"level": "error", "msg": "InfluxDB refused the api's credentials, retrying", "attempt": 1,
              "error": "the admin already exists with another password"},
             {"level": "error", "msg": "InfluxDB refused the api's credentials, retrying", "attempt": 2,
              "error": "the admin already exists with another password (2)"},
             {"level": "info", "msg": "Finished server process [7]"}]
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    assert swarm.log_hint(text) == ("log: InfluxDB refused the api's credentials, retrying: "
                                    "the admin already exists with another password (2)")


def test_log_hint_reads_logfmt_errors_and_falls_back_to_the_last_line():
    influxd = ('ts=2026-11-23T05:00:00Z lvl=info msg="Opened service"\n'
               'ts=2026-11-23T05:00:01Z lvl=error msg="Unable to open" error="permission denied"\n'
               'ts=2026-11-23T05:00:02Z lvl=info msg="Closing"\n')
    assert swarm.log_hint(influxd) == 'log: ts=2026-11-23T05:00:01Z lvl=error msg="Unable to open" error="permission denied"'
    traceback = "Traceback (most recent call last):\n  File \"x\", line 1\nValueError: bad\n\n"
    assert swarm.log_hint(traceback) == "log: ValueError: bad"
    stopped = "\n".join(json.dumps({"level": "info", "msg": m}) for m in ("Uvicorn running", "Finished server process"))
    assert swarm.log_hint(stopped) == ""  # only info lines: it was stopped, its log does not say why
    assert swarm.log_hint('ts=1 lvl=info msg="Listening"\n') == ""
    assert swarm.log_hint(json.dumps({"level": "warning", "msg": "queue full"})) == "log: queue full"
    assert swarm.log_hint("") == "" and swarm.log_hint("\n \n") == ""
    assert len(swarm.log_hint("x" * 5000)) == len("log: ") + 400


def _with_secrets(*names: str) -> dict:
    return {"Spec": {"TaskTemplate": {"ContainerSpec": {"Secrets": [{"SecretName": n} for n in names]}}}}


def test_changed_secrets_compares_the_running_generation_with_the_new_one():
    running = [_with_secrets("iot-test_api_tokens_aaaaaaaaaaaa", "iot-test_influxdb_admin_password_bbbbbbbbbbbb"),
               _with_secrets("other_api_tokens_cccccccccccc")]
    new = ["iot-test_api_tokens_aaaaaaaaaaaa", "iot-test_influxdb_admin_password_dddddddddddd",
           "iot-test_influxdb_reader_password_eeeeeeeeeeee"]  # the reader's is new to this stack: no change
    assert swarm.changed_secrets(running, "iot-test", new) == ["influxdb_admin_password"]
    assert swarm.changed_secrets([], "iot-test", new) == []


def test_a_changed_admin_password_warns_before_the_deploy_fails():
    assert swarm.secret_change_notes([], "./iot undeploy --env test --volumes") == []
    notes = swarm.secret_change_notes(["api_tokens"], "./iot undeploy --env test --volumes")
    assert len(notes) == 1 and "api_tokens" in notes[0]
    notes = swarm.secret_change_notes(["api_tokens", "influxdb_admin_password"], "./iot undeploy --env test --volumes")
    assert len(notes) == 2 and "SET PASSWORD" in notes[1] and "./iot undeploy --env test --volumes" in notes[1]


def test_table_lists_services():
    text = swarm.table([swarm.service_state(service(1), [task()])])
    assert text.splitlines()[0].split() == ["SERVICE", "REPLICAS", "VERSION", "UPDATE", "IMAGE"]
    assert text.splitlines()[1].split() == ["iot-test_api", "1/1", "0.2.0", "-", IMAGE]


def test_referenced_objects_keep_what_a_rollback_needs():
    assert swarm.referenced_objects([service(1)], "secret") == {"iot-test_api_tokens_aaa", "iot-test_api_tokens_old"}
    assert swarm.referenced_objects([service(1)], "config") == set()


def test_parse_machine_env():
    text = ('export DOCKER_TLS_VERIFY="1"\nexport DOCKER_HOST="tcp://192.168.99.100:2376"\n'
            'export DOCKER_CERT_PATH="/root/.docker/machine/machines/node1"\nexport DOCKER_MACHINE_NAME="node1"\n'
            '# Run this command to configure your shell: \n# eval $(docker-machine env node1)\n')
    assert swarm.parse_machine_env(text) == {
        "DOCKER_TLS_VERIFY": "1", "DOCKER_HOST": "tcp://192.168.99.100:2376",
        "DOCKER_CERT_PATH": "/root/.docker/machine/machines/node1", "DOCKER_MACHINE_NAME": "node1"}


def test_label_constraints():
    assert swarm.label_constraints(["node.labels.iot.influxdb == true", "node.role == manager",
                                    "node.labels.zone==a"]) == {"iot.influxdb": "true", "zone": "a"}


@pytest.mark.parametrize(("environ", "local", "host"), [
    ({}, True, "localhost"),
    ({"DOCKER_HOST": "unix:///var/run/docker.sock"}, True, "localhost"),
    ({"DOCKER_HOST": "ssh://ops@swarm1.example"}, False, "swarm1.example"),
    ({"DOCKER_HOST": "tcp://192.168.99.100:2376"}, False, "192.168.99.100"),
    ({"DOCKER_CONTEXT": "prod"}, False, "localhost"),
    ({"DOCKER_HOST": "unix:///work/build/clusters/iot/docker.sock"}, False, "localhost"),
])
def test_targets(environ, local, host):
    assert swarm.is_local_target(environ) is local
    assert swarm.published_host(environ) == host


def test_rollback_only_what_swarm_did_not_roll_back_itself():
    def st(update_state):
        return swarm.service_state(service(1, {"State": update_state, "StartedAt": "t"} if update_state else None),
                                   [])
    calls = []

    class Fake(swarm.Docker):
        def run(self, *args, **kw):
            calls.append(args)
            return super().run(*args, **kw)

    fake = Fake(dry=True, progress=lambda m: None)
    swarm.rollback_services(fake, [st("paused"), st("rollback_completed"), st("updating")])
    assert calls == [("service", "rollback", "--detach", "iot-test_api")] * 2


def test_host_ports_without_a_spare_node_update_stop_first():
    from ops import render

    test_values = render.load_values("test", {"bases.mode": "offline"})
    overrides, notes = swarm.update_order_overrides(test_values, ready_nodes=1)
    assert overrides == {"api.deploy.update_order": "stop-first"} and "host-mode port on 1 node" in notes[0]
    assert swarm.update_order_overrides(test_values, ready_nodes=3) == ({}, [])  # a spare node: start-first
    assert swarm.update_order_overrides(render.load_values("prod"), ready_nodes=1) == ({}, [])  # ingress


class _PrunedTaskDocker(swarm.Docker):
    """`service ps` lists two tasks; by the time of `inspect`, Swarm has pruned one (or fails otherwise)."""

    def __init__(self, inspect_stderr: str):
        super().__init__()
        self.inspect_stderr = inspect_stderr

    def run(self, *args, check=True, echo=True, timeout=300, read=False):
        import subprocess

        if args[:2] == ("service", "ps"):
            return subprocess.CompletedProcess(args, 0, "kept\npruned\n", "")
        return subprocess.CompletedProcess(args, 1, json.dumps([{"ID": "kept"}]), self.inspect_stderr)


def test_a_task_pruned_between_listing_and_inspecting_is_skipped():
    docker = _PrunedTaskDocker("Error response from daemon: task pruned not found\n")
    assert swarm.service_tasks(docker, "iot-test_api") == [{"ID": "kept"}]


def test_any_other_inspect_error_is_reported():
    with pytest.raises(swarm.SwarmError, match="permission denied"):
        swarm.service_tasks(_PrunedTaskDocker("Error: permission denied\n"), "iot-test_api")
