"""The api's protocol subclasses uvicorn's internals (iot_api/protocol.py): an upgrade must fail loudly.

The behaviour itself is tested for real in tests/integration/test_api_slow_client.py and
test_api_http_framing.py; this checks the guard around it: the version the api accepts is the pinned
one, another version is refused with a message that says what to do, and the methods ApiProtocol
overrides still exist on uvicorn's class (a rename would otherwise leave an override never called).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from iot_api import protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

ROOT = Path(__file__).resolve().parents[2]


def test_the_tested_version_is_the_pinned_one():
    pins = re.findall(r"^uvicorn==(\S+)", (ROOT / "api" / "requirements.txt").read_text(), re.M)
    assert pins == [protocol.UVICORN_TESTED]
    assert protocol.check_uvicorn() is None  # the venv's uvicorn is the pinned one


def test_another_uvicorn_is_refused_with_what_to_do():
    problem = protocol.check_uvicorn("0.55.0")
    assert problem and "uvicorn 0.55.0 is installed" in problem and protocol.UVICORN_TESTED in problem
    assert "pip install -r api/requirements.txt" in problem


def test_the_api_does_not_start_on_another_uvicorn(tmp_path):
    """The real entry point, with uvicorn's reported version changed: one line, exit status 2."""
    code = ("import sys, uvicorn; uvicorn.__version__ = '9.9.9'; from iot_api.__main__ import main; sys.exit(main())")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "INFLUXDB_URL": "http://127.0.0.1:9"})
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("iot-api: uvicorn 9.9.9 is installed"), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_every_override_still_exists_on_uvicorns_class():
    """Every public method of ApiProtocol overrides one of uvicorn's, which must still be there."""
    public = sorted(name for name, value in vars(protocol.ApiProtocol).items() if callable(value) and not name.startswith("_"))
    assert {"connection_made", "connection_lost", "data_received", "on_headers_complete", "on_message_complete"} <= set(public)
    for name in public:
        assert callable(getattr(HttpToolsProtocol, name, None)), f"uvicorn's HttpToolsProtocol has no {name} any more"
