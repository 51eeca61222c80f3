"""The course's collector as a baseline: its Node.js app (course-collector/, rebuilt from the course's
snippet) against the same influxd, with the course's payload, at the same connections as the api.

Each request carries its own `ts` (the payload devices send: `{"ts": ..., "type": "temp", "value": 34,
"sensor_id": 123}`), a millisecond apart, so every acknowledged reading is a point of its own for both
servers and the stored count can be checked against what they acknowledged.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

from .common import ROOT, BenchError, InfluxServer, free_port, listening

NAME = "course collector (node), ts payload"
API_TS = "api single, ts payload"
SOURCE = Path(__file__).resolve().parent / "course-collector"
FILES = ("index.js", "package.json", "package-lock.json")
INSTALL_DIR = ROOT / "build" / "bench" / "course-collector"  # node_modules stay out of the source tree
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: inside the api's accepted range, far from "now"
WINDOW_MS = 10**8  # each wrk process gets a window of its own (27.8 hours of ms, 50 million readings at
# a ms apart): warm-up and measure never overlap, and a whole run (~100 wrk processes at most) stays in 2026
# before today, where the api accepts it (API_MAX_FUTURE)
BASE = "__BASE_MS__"  # replaced for each wrk process by base_ms()

# wrk's Lua: one reading per request, `ts` one millisecond after the previous one of all threads (each
# thread gets an id in setup(): threads are separate Lua states with their own counters).
TS_SCRIPT = """
local threads, counter = 0, 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
request = function()
  local ms = __BASE_MS__ + counter * 2 + id  -- wrk.py runs at most two threads
  counter = counter + 1
  local ts = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03dZ", ms % 1000)
  local body = '{"ts":"' .. ts .. '","type":"temp","value":34,"sensor_id":123}'
  return wrk.format("POST", "/data", {["Content-Type"] = "application/json"}, body)
end
"""


def base_ms(n: int) -> int:
    """The first timestamp of the n-th wrk process of a run."""
    return T0_MS + n * WINDOW_MS


def require() -> None:
    missing = [tool for tool in ("node", "npm") if not shutil.which(tool)]
    if missing:
        raise BenchError(f"{' and '.join(missing)} not found: the collector scenario runs the course's Node.js "
                         "collector (Debian: apt-get install nodejs npm)")


def _lock_digest() -> str:
    return hashlib.sha256(b"".join((SOURCE / name).read_bytes() for name in FILES)).hexdigest()


def install(progress) -> Path:
    """The collector with its four packages (npm ci from the lock, hashes checked), reinstalled only
    when its files changed."""
    stamp = INSTALL_DIR / ".installed.sha256"
    want = _lock_digest()
    if stamp.is_file() and stamp.read_text() == want and (INSTALL_DIR / "node_modules").is_dir():
        return INSTALL_DIR
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(SOURCE / name, INSTALL_DIR / name)
    cmd = ["npm", "ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"]
    progress(f"bench: installing the course collector's packages: {' '.join(cmd)} (in {INSTALL_DIR})")
    try:
        done = subprocess.run(cmd, cwd=INSTALL_DIR, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise BenchError("npm ci did not finish in 10 minutes (is the npm registry reachable?)") from None
    if done.returncode != 0:
        raise BenchError(f"npm ci failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}")
    stamp.write_text(want)
    return INSTALL_DIR


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, db: str):
        self.proc, self.url, self.db = proc, url, db


@contextmanager
def server(influx: InfluxServer, db: str, progress):
    """The collector on a free loopback port, writing into `db` of influx (created first: the course
    made it by hand with curl), for the duration of a `with` block."""
    where = install(progress)
    influx.query(f'CREATE DATABASE "{db}"')
    port = free_port()
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "PORT": str(port), "INFLUXDB_HOST": "127.0.0.1",
           "INFLUXDB_PORT": str(influx.port), "INFLUXDB_DB": db, "NODE_ENV": "production"}
    # winston logs every reading on stdout, as in the course: its cost is part of the baseline (not kept).
    with listening(["node", "index.js"], port, "the course collector", cwd=where, env=env) as proc:
        yield Server(proc, f"http://127.0.0.1:{port}", db)
