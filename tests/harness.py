"""Real processes for the tests: ops/servers.py (InfluxDB, the api, mosquitto on loopback, shared with
`./iot bench`), re-exported here for the tests, and what only the tests use.
"""
from __future__ import annotations

import json

import requests

from ops import http_client
from ops.servers import ROOT, ApiServer, InfluxServer, free_port, http, wait_until  # noqa: F401  (the tests' imports)


def call(method: str, url: str, token: str | None = None, **kwargs) -> requests.Response:
    """One request to a stack's api (or another of our HTTP services), as Bearer TOKEN when given, with
    http_client's timeout. 4xx/5xx are answers: assert on `.status_code` (or `raise_for_status()`)."""
    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **kwargs.pop("headers", {})}
    return http_client.request(method, url, headers=headers, **kwargs)

# Run as `python3 -c SCRIPT QUERY READER` inside a container of the stack (the api's image has python, and no
# requests: hence urllib):
# straight to InfluxDB over the stack's internal network, not through our api, so it is the
# independent check. With influxdb.auth, as the reader, its password read from the secret mounted in
# that container (/run/secrets), never on a command line.
_COUNT_IN_CONTAINER = (
    "import base64, os, sys, urllib.parse, urllib.request; "
    "req = urllib.request.Request('http://influxdb:8086/query?' + urllib.parse.urlencode("
    "{'q': sys.argv[1]})); secret = '/run/secrets/influxdb_reader_password'; "
    "os.path.exists(secret) and req.add_header('Authorization', 'Basic ' + base64.b64encode("
    "(sys.argv[2] + ':' + open(secret).read().strip()).encode()).decode()); "
    "print(urllib.request.urlopen(req).read().decode())")


def influx_count_in_container(exec_in_api, influxdb_values: dict, where: str = "") -> int:
    """Points in a stack's InfluxDB; `exec_in_api(argv)` runs argv in its api container, returns stdout."""
    v = influxdb_values
    q = f'SELECT count("value") FROM "{v["db"]}"."{v["rp"]}"."{v["measurement"]}" {where}'
    out = exec_in_api(["python3", "-c", _COUNT_IN_CONTAINER, q, v["users"]["reader"]])
    series = json.loads(out).get("results", [{}])[0].get("series", [])
    return sum(row[1] for s in series for row in s["values"])
