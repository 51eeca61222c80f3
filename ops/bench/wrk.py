"""wrk (Debian's package) as the load generator: one Lua script per load, its summary as one JSON line.

Each load is its own wrk process, so two can run at once (reads under writes).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from .common import BenchError

# wrk reports through this hook as one JSON line (latencies in microseconds).
_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%d,"duration_us":%d,"socket_errors":%d,"non2xx":%d,' ..
    '"p50_us":%d,"p95_us":%d,"p99_us":%d}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def require() -> None:
    if not shutil.which("wrk"):
        raise BenchError("wrk not found: install it (Debian: apt-get install wrk)")


def post_script(body_file: Path, content_type: str) -> str:
    """POST the same body on every request."""
    return (f'local f = assert(io.open("{body_file}", "rb"))\nwrk.body = f:read("*a")\nf:close()\n'
            f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\n')


def get_script(paths: list[str]) -> str:
    """GET these paths in turn (each wrk thread cycles through them)."""
    listed = ", ".join(json.dumps(p) for p in paths)  # plain ASCII paths: a JSON string is a Lua string
    return (f"local paths = {{{listed}}}\nlocal n = 0\n"
            "request = function()\n  n = n + 1\n  return wrk.format(\"GET\", paths[(n % #paths) + 1])\nend\n")


class Load:
    """One wrk process: started at construction, `result()` waits for its summary."""

    def __init__(self, url: str, script: str, connections: int, seconds: float, workdir: Path, name: str = "load"):
        path = workdir / f"{name}.lua"
        path.write_text(script + _DONE)
        self.seconds = max(1, math.ceil(seconds))  # wrk counts whole seconds
        threads = max(1, min(2, connections))
        self.cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{self.seconds}s", "--timeout", "10s", "-s",
                    str(path), url]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def running(self) -> bool:
        """Without reaping wrk (WNOWAIT): result() reads its CPU from the rusage that reaping returns."""
        if self.proc.returncode is not None:
            return False
        return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def wait(self, timeout: float) -> None:
        """Until wrk has exited or TIMEOUT seconds have passed, without reaping it."""
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def result(self) -> dict:
        """wrk's summary, plus `wrk_cpu_s`: the CPU wrk itself used, which shares the machine with what it
        measures (read from wait4's rusage, so the process is reaped here rather than by communicate())."""
        timer = threading.Timer(self.seconds + 60, self.proc.kill)
        timer.start()
        try:
            out, err = self.proc.stdout.read(), self.proc.stderr.read()  # both end when wrk exits
            _, status, usage = os.wait4(self.proc.pid, 0)
        finally:
            timer.cancel()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        if self.proc.returncode == -9:
            raise BenchError(f"wrk did not finish: {' '.join(self.cmd)}")
        for line in out.splitlines():
            if line.startswith("BENCH "):
                return {**json.loads(line[6:]), "wrk_cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}
        raise BenchError(f"wrk gave no result (exit {self.proc.returncode}): {out[-300:]} {err[-300:]}".strip())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run(url: str, script: str, connections: int, seconds: float, workdir: Path, name: str = "load") -> dict:
    return Load(url, script, connections, seconds, workdir, name).result()
