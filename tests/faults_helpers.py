"""Helpers of the load and fault tests on real stacks (tests/e2e/test_faults_*.py): the simulator as a
real process on this machine aimed at a stack's published port, the checks that make every run's
count exact, and a container's memory as its cgroup reports it.

The simulator gives every reading a distinct (sensor, type, nanosecond timestamp), so "InfluxDB holds
exactly `generated` points under the run's sensor prefix" proves both that nothing was lost and that
nothing was stored twice; its own summary and exit status must say the same.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_STORED = re.compile(r" progress +[0-9.]+s: sent \d+ stored (\d+) ")


class SimulatorRun:
    """`python -m iot_simulator ... --json` in the background; stderr (progress lines) to a file."""

    def __init__(self, url: str, token_file: Path, prefix: str, *args: str):
        self.prefix = prefix
        self.stderr_path = Path(tempfile.mkstemp(prefix="iot-sim-", suffix=".log")[1])
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iot_simulator", "--url", url, "--token-file", str(token_file),
             "--sensor-prefix", prefix, "--types", "temp", "--progress-interval", "1", "--json", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.started = time.monotonic()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stored_so_far(self) -> int:
        found = _STORED.findall(self.stderr())
        return int(found[-1]) if found else 0

    def wait_stored(self, at_least: int, timeout: float = 60) -> None:
        """Poll its progress lines until it has `at_least` readings stored: the load is running."""
        deadline = time.monotonic() + timeout
        while self.stored_so_far() < at_least:
            assert self.proc.poll() is None, f"the simulator ended early:\n{self.stderr()[-2000:]}"
            assert time.monotonic() < deadline, f"fewer than {at_least} stored after {timeout} s:\n{self.stderr()[-2000:]}"
            time.sleep(0.2)

    def running(self) -> bool:
        return self.proc.poll() is None

    def finish(self, timeout: float) -> tuple[int, dict]:
        """Wait for its exit; returns (exit status, JSON summary). Killed (and failed) after `timeout`."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError(f"the simulator did not finish within {timeout} s:\n{self.stderr()[-2000:]}") from None
        finally:
            self._stderr.close()
        lines = [line for line in out.splitlines() if line.strip()]
        assert lines, f"no summary on stdout (exit {self.proc.returncode}):\n{self.stderr()[-2000:]}"
        return self.proc.returncode, json.loads(lines[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def assert_exact_run(code: int, summary: dict, stored_in_influxdb: int, expected_generated: int | None = None,
                     fault_seen: bool = True, stderr: str = "") -> None:
    """The simulator exited 0, its summary says stored == generated with nothing pending or rejected,
    InfluxDB holds exactly that many points of the run, and (fault_seen) the fault was felt."""
    tail = stderr[-2500:]
    assert code == 0 and summary["exit_code"] == 0, f"simulator exit {code}: {summary}\n{tail}"
    assert summary["stored"] == summary["generated"], (summary, tail)
    assert summary["pending"] == 0 and summary["rejected"] == 0, (summary, tail)
    if expected_generated is not None:
        assert summary["generated"] == expected_generated, summary
    assert stored_in_influxdb == summary["generated"], (
        f"InfluxDB holds {stored_in_influxdb} points of the run, the simulator generated {summary['generated']}: "
        + ("lost readings" if stored_in_influxdb < summary["generated"] else "duplicates or foreign points"))
    if fault_seen:
        assert summary["retries"] > 0 and sum(summary["errors"].values()) > 0, f"the fault was not felt: {summary}"


def memory_bytes(container_id: str, docker: Callable[..., str]) -> int:
    """A container's memory in use as `docker stats` counts it (usage minus inactive page cache), read
    from its cgroup (v1 or v2, cgroupfs or systemd driver); `docker stats` itself as the fallback."""
    full = docker("inspect", "--format", "{{.Id}}", container_id).strip()
    for base, usage_name, inactive_key in (
            (f"/sys/fs/cgroup/memory/docker/{full}", "memory.usage_in_bytes", "total_inactive_file"),
            (f"/sys/fs/cgroup/memory/system.slice/docker-{full}.scope", "memory.usage_in_bytes", "total_inactive_file"),
            (f"/sys/fs/cgroup/system.slice/docker-{full}.scope", "memory.current", "inactive_file"),
            (f"/sys/fs/cgroup/docker/{full}", "memory.current", "inactive_file")):
        usage = Path(base) / usage_name
        if usage.exists():
            stat = dict(line.split() for line in (Path(base) / "memory.stat").read_text().splitlines())
            return int(usage.read_text()) - int(stat.get(inactive_key, 0))
    text = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container_id).split("/")[0].strip()
    number, unit = re.fullmatch(r"([0-9.]+)\s*([KMGT]?i?B)", text).groups()
    scale = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9}
    return int(float(number) * scale[unit])
