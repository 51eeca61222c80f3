"""Which tests may run side by side (`./iot test` runs two pytest-xdist workers; tests/conftest.py).

A group's tests run in order on one worker. A unit or integration module is a group (its module
fixtures run once). The e2e modules that share env test's build folder, its compose project and stack,
the swarm or fixed ports are one group, `e2e-serial`, which one worker runs from start to end while the
other runs everything else. Only the e2e modules of E2E_OWN_RESOURCES, which share none of that, run
beside it: any other e2e module, a new one included, joins the serial chain until someone checks what it
shares and lists it here.
"""
from __future__ import annotations

E2E_SERIAL = "e2e-serial"
E2E_OWN_RESOURCES = {  # e2e modules that may run beside the serial chain, and what each keeps to itself
    "test_images.py": "images under tags of its own (iot-e2e/*), containers under the run label",
    "test_registry_push.py": "its own registry on a free port, images tagged with a version of its own",
    "test_db_backup.py": "compose project iotbk-test rendered into a temporary folder, ports 18190-18191",
    "test_faults_compose.py": "compose project iotfault-test rendered into a temporary folder, ports 18290-18291",
    "test_online_bases.py": "compose project iot-online-dev, a temporary build/ and secrets/, ports 28337, 23000, "
                            "28088, version 0.0.0-online; the stand-in tags it adds name official images no "
                            "offline-mode test runs",
}
# Tests outside tests/e2e that write env dev's or test's build/ folder with settings of their own: beside the
# serial chain they could rewrite a compose file between its render and its `docker compose` run.
SHARES_BUILD_FOLDERS = {
    "tests/unit/test_dry_vs_run.py": "runs every task for real against stand-in programs, so renders build/dev "
                                     "and build/test with --set overrides (a stand-in's port)",
}


def rank(nodeid: str) -> int:
    """Where a test goes in the run: the serial chain first (one worker starts it at once), then the other
    e2e modules (long: started early, they do not end the run), then the rest, in file order."""
    group = group_of(nodeid)
    return 0 if group == E2E_SERIAL else 1 if group.startswith("tests/e2e/") else 2


def group_of(nodeid: str) -> str:
    """The group of a test id (`tests/e2e/test_stack.py::test_x`): its module, or the serial e2e chain."""
    module = nodeid.split("::", 1)[0]
    folder, _, name = module.rpartition("/")
    if folder == "tests/e2e" and name not in E2E_OWN_RESOURCES or module in SHARES_BUILD_FOLDERS:
        return E2E_SERIAL
    return module
