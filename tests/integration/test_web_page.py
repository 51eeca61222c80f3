"""The live page on real components: a real mosquitto (the stacks' configuration, tests/mqtt_harness.py),
nginx started by web/docker-entrypoint.sh itself (natively, on a free loopback port) and a real headless
Chromium driven by selenium through Debian's chromedriver.

What it shows: the headers (CSP and friends) and routes nginx serves; the broker refuses a wrong
password and anonymous clients through /mqtt and the web user cannot publish; the page loads with no
console error and no CSP violation, draws the 20 districts and follows readings, meta and aggregates
published by the fleet and processor roles; publish -> value on the page p95 < 1 s over 100 readings;
and a screenshot of the page filled with realistic data (UPDATE_SCREENSHOT=1 writes docs/mqtt/page.png).
"""
from __future__ import annotations

import gzip
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from harness import ROOT, call, free_port, http, wait_until
from mqtt_harness import MosquittoServer

WEB = ROOT / "web"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
STATIONS = ROOT / "simulator" / "iot_simulator" / "fleet" / "stations.json"
SCREENSHOT = ROOT / "docs" / "mqtt" / "page.png"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
DISTRICTS = json.loads((WEB / "site" / "districts.json").read_text(encoding="utf-8"))

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in requirements-dev.txt")

for _path, _what in ((NGINX, "Debian's nginx-light"), (CHROMIUM, "Debian's chromium"), (CHROMEDRIVER, "chromium-driver")):
    if not os.path.exists(_path):
        pytest.skip(f"{_path} not found: install {_what}", allow_module_level=True)


class WebServer:
    """nginx as the image runs it: web/docker-entrypoint.sh renders the template and execs nginx; only
    the paths (site, template, output folder) and the listen address are overridden."""

    def __init__(self, broker: MosquittoServer, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # nginx's workers run as nobody when the tests run as root: the folder must be traversable.
        self.run_dir = Path(tempfile.mkdtemp(prefix="iot-web-"))
        self.run_dir.chmod(0o755)
        self.env = dict(os.environ, WEB_PORT=str(self.port), WEB_BIND="127.0.0.1",
                        MQTT_WS_UPSTREAM=f"127.0.0.1:{broker.ws_port}",
                        MQTT_WEB_USERNAME=broker.credentials("web")[0],
                        MQTT_WEB_PASSWORD_FILE=str(broker.password_path("web")),
                        WEB_ROOT=str(WEB / "site"), WEB_TEMPLATE=str(WEB / "nginx.conf.template"),
                        WEB_RUN_DIR=str(self.run_dir), WEB_NGINX=NGINX, **(env or {}))
        log = open(self.run_dir / "web.log", "ab")
        self.proc = subprocess.Popen([str(WEB / "docker-entrypoint.sh")], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: self.proc.poll() is None and http("GET", self.url + "/healthz")[0] == 200, 15,
                   f"nginx on {self.port}: {self.log()}")

    def log(self) -> str:
        return (self.run_dir / "web.log").read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)


class Publisher:
    """A paho client connected as ROLE over TCP; publish() returns once the broker acked (QoS 1)."""

    def __init__(self, broker: MosquittoServer, role: str):
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-web-{role}-{os.getpid()}")
        self.client.username_pw_set(*broker.credentials(role))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        wait_until(self.client.is_connected, 10, f"{role} connected")

    def publish(self, topic: str, payload: dict, retain: bool = False) -> None:
        info = self.client.publish(topic, json.dumps(payload), qos=1, retain=retain)
        info.wait_for_publish(timeout=10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def ws_connect(web: WebServer, username: str | None, password: str | None) -> tuple[paho.Client, dict]:
    """A paho client over WebSockets through nginx's /mqtt; the CONNACK's reason code lands in result."""
    result: dict = {}
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-ws-{time.monotonic_ns()}",
                         transport="websockets")
    client.ws_set_options(path="/mqtt")
    if username is not None:
        client.username_pw_set(username, password)
    client.on_connect = lambda c, u, flags, rc, props: result.setdefault("rc", rc)
    client.on_message = lambda c, u, msg: result.setdefault("messages", []).append(msg.topic)
    client.connect("127.0.0.1", web.port)
    client.loop_start()
    wait_until(lambda: "rc" in result, 10, "a CONNACK through /mqtt")
    return client, result


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- fixtures: one broker, one nginx, one browser for the module (each takes a second or two) -------------
@pytest.fixture(scope="module")
def broker():
    server = MosquittoServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def web(broker):
    server = WebServer(broker)
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="iot-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--force-device-scale-factor=1", "--window-size=1440,1400", "--hide-scrollbars",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    # Runs before the page's own scripts in every document and is exempt from its CSP: records every
    # violation and uncaught error, so a test can assert there were none.
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
        window.__violations = []; window.__errors = [];
        document.addEventListener('securitypolicyviolation',
            e => window.__violations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline')));
        window.addEventListener('error', e => window.__errors.push(String(e.message)));
        window.addEventListener('unhandledrejection', e => window.__errors.push(String(e.reason)));
    """})
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(browser, web: WebServer) -> None:
    browser.get(web.url + "/")
    browser.get_log("browser")  # drop what an earlier page logged
    wait_until(lambda: browser.execute_script("return document.getElementById('status').textContent") == "connected",
               10, "the page's MQTT connection")


def page_problems(browser) -> list[str]:
    """Console errors and warnings, CSP violations, uncaught errors since the last call."""
    logged = [f"{e['level']}: {e['message']}" for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    return logged + browser.execute_script("return window.__violations.concat(window.__errors)")


def js(browser, script: str, *args):
    return browser.execute_script(script, *args)


def select_type(browser, kind: str) -> None:
    js(browser, "const s = document.getElementById('type-select'); s.value = arguments[0]; s.dispatchEvent(new Event('change'))",
       kind)


# -- nginx: routes and headers ------------------------------------------------------------------------
def test_nginx_routes_and_headers(web, broker):
    status, headers, body = http("GET", web.url + "/")
    assert status == 200 and b"vendor/mqtt.min.js" in body
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Server"] == "nginx"  # server_tokens off: no version
    assert "text/html" in headers["Content-Type"]

    status, headers, body = http("GET", web.url + "/config.json")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert json.loads(body) == dict(zip(("username", "password"), broker.credentials("web"), strict=True))

    assert http("GET", web.url + "/healthz")[0] == 200
    status, headers, _ = http("GET", web.url + "/nope")
    assert status == 404 and headers["Content-Security-Policy"] == CSP  # `always`: error pages too

    # The 342 KB client goes out gzipped, and unchanged.
    # stream=True and raw.read(): the bytes as sent (requests would gunzip .content)
    with call("GET", web.url + "/vendor/mqtt.min.js", headers={"Accept-Encoding": "gzip"}, stream=True) as resp:
        assert resp.status_code == 200 and resp.headers["Content-Encoding"] == "gzip"
        assert "javascript" in resp.headers["Content-Type"]
        packed = resp.raw.read()
    assert gzip.decompress(packed) == (WEB / "site" / "vendor" / "mqtt.min.js").read_bytes()
    assert len(packed) < 150_000
    # nginx started cleanly (it does start despite an [emerg] about, e.g., a stray NGINX variable).
    assert not re.search(r"\[(emerg|alert|crit)\]", web.log()), web.log()


def test_broker_refuses_wrong_password_and_anonymous_through_nginx(web, broker):
    user, password = broker.credentials("web")
    for username, secret in ((user, password + "x"), (None, None)):
        client, result = ws_connect(web, username, secret)
        client.loop_stop()
        client.disconnect()
        # 4 bad user name or password, 5 not authorised (mosquitto answers 5 to both with MQTT 3.1.1)
        assert result["rc"].is_failure and result["rc"].value in (4, 5, 134, 135), result
    client, result = ws_connect(web, user, password)
    try:
        assert not result["rc"].is_failure
        # The web user is read-only: its publication is dropped by the ACL, a fleet-side subscriber sees nothing.
        seen: list[str] = []
        watcher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-web-watcher")
        watcher.username_pw_set(*broker.credentials("historian"))
        watcher.on_message = lambda c, u, msg: seen.append(msg.topic)
        watcher.connect(broker.host, broker.port)
        watcher.loop_start()
        wait_until(watcher.is_connected, 10, "historian connected")
        watcher.subscribe("iot/#", qos=1)
        time.sleep(0.3)
        client.publish("iot/q01/tls-web/temp", json.dumps({"ts": iso(datetime.now(UTC)), "type": "temp", "value": 1,
                                                             "sensor_id": "tls-web"}), qos=1).wait_for_publish(5)
        fleet = Publisher(broker, "fleet")  # a control: the same topic from the fleet does arrive
        fleet.publish("iot/q01/tls-ctl/temp", {"ts": iso(datetime.now(UTC)), "type": "temp", "value": 1,
                                               "sensor_id": "tls-ctl"})
        wait_until(lambda: "iot/q01/tls-ctl/temp" in seen, 5, "the fleet's control reading")
        assert "iot/q01/tls-web/temp" not in seen
        fleet.close()
        watcher.loop_stop()
        watcher.disconnect()
    finally:
        client.loop_stop()
        client.disconnect()


# -- the page in a real browser -----------------------------------------------------------------------
def test_page_follows_readings_meta_and_aggregates(web, broker, browser):
    open_page(browser, web)
    assert js(browser, "return document.querySelectorAll('#map-svg path.district').length") == 20
    assert js(browser, "return Array.from(document.querySelectorAll('#map-svg path.district')).map(p => p.id)") == [
        f"district-q{n:02d}" for n in range(1, 21)]
    assert js(browser, "return document.querySelector('#map-svg > title').textContent")
    assert "Toulouse Métropole, open data, ODbL" in js(browser, "return document.getElementById('attribution').textContent")
    grey = js(browser, "return document.getElementById('district-q05').getAttribute('fill')")

    fleet, processor = Publisher(broker, "fleet"), Publisher(broker, "processor")
    try:
        now = datetime.now(UTC)
        # A station of q05 (position of the real tls-63, LIFE Soufflot) and its readings.
        fleet.publish("meta/sensors/tls-9063", {
            "sensor_id": "tls-9063", "name": "LIFE Soufflot (test)", "district": "q05", "district_name": "x",
            "lat": 43.58533929, "lon": 1.441291712, "altitude": 138.2, "kind": "ISS",
            "types": ["temp", "humidity", "pressure"]}, retain=True)
        for kind, value in (("temp", 21.4), ("humidity", 55.0), ("pressure", 1003.2)):
            fleet.publish(f"iot/q05/tls-9063/{kind}", {"ts": iso(now), "type": kind, "value": value,
                                                        "sensor_id": "tls-9063"})
        for district, mean in (("q05", 21.2), ("q01", 18.0)):
            processor.publish(f"agg/{district}/temp", {"district": district, "type": "temp", "mean": mean,
                                                       "min": mean - 1.4, "max": mean + 1.8, "n": 4, "window_s": 300,
                                                       "ts": iso(now)}, retain=True)
        processor.publish("agg/q05/humidity", {"district": "q05", "type": "humidity", "mean": 55.0, "min": 50.0,
                                               "max": 60.0, "n": 2, "window_s": 300, "ts": iso(now)}, retain=True)

        row = "#sensor-tls-9063"
        wait_until(lambda: js(browser, f"return document.querySelector('{row} .v-pressure')?.textContent") == "1003.2",
                   5, "the station's row")
        assert js(browser, f"return document.querySelector('{row} .v-temp').textContent") == "21.4"
        assert js(browser, f"return document.querySelector('{row} .v-humidity').textContent") == "55"
        assert js(browser, f"return document.querySelector('{row} th').textContent").startswith("LIFE Soufflot (test)")
        assert js(browser, f"return document.querySelector('{row} .district-cell').textContent").startswith("q05 Saint-Michel")

        # The station's dot lands in its district: the point under the dot's centre is the q05 path.
        wait_until(lambda: js(browser, "return document.querySelector('circle[data-sensor=\"tls-9063\"]')"), 5, "the dot")
        under = js(browser, """
            const dot = document.querySelector('circle[data-sensor="tls-9063"]');
            const r = dot.getBoundingClientRect();
            dot.style.display = 'none';
            const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
            dot.style.display = '';
            return hit && hit.id;""")
        assert under == "district-q05"

        # District stats and colours: q05 (21.2) warmer than q01 (18.0); q02 has no aggregate.
        wait_until(lambda: js(browser, "return document.querySelector('#district-row-q05 .mean').textContent") == "21.2",
                   5, "q05's mean")
        stats = js(browser, "return ['mean', 'min', 'max', 'n'].map("
                            "c => document.querySelector('#district-row-q05 .' + c).textContent)")
        assert stats == ["21.2", "19.8", "23.0", "4"]
        fills = js(browser, "return ['q05','q01','q02'].map(d => document.getElementById('district-' + d).getAttribute('fill'))")
        assert fills[0] != grey and fills[1] != grey and fills[0] != fills[1] and fills[2] == grey
        red = [int(c) for c in fills[0][4:-1].split(",")]
        blue = [int(c) for c in fills[1][4:-1].split(",")]
        assert red[0] > blue[0] and red[2] < blue[2]  # the warmer district is redder on this scale
        assert js(browser, "return document.getElementById('district-q05').querySelector('title').textContent").endswith(
            "mean 21.2 °C (min 19.8, max 23.0, n 4)")

        # The selector: humidity recolours (q05 has a humidity mean, q01 has none).
        select_type(browser, "humidity")
        wait_until(lambda: js(browser, "return document.getElementById('district-q01').getAttribute('fill')") == grey,
                   5, "q01 grey for humidity")
        assert js(browser, "return document.querySelector('#district-row-q05 .mean').textContent") == "55"
        assert "%" in js(browser, "return document.getElementById('legend').textContent")
        select_type(browser, "temp")

        # The processor clears an emptied district's aggregate (an empty retained payload): no data again.
        processor.client.publish("agg/q01/temp", b"", qos=1, retain=True).wait_for_publish(5)
        wait_until(lambda: js(browser, "return document.getElementById('district-q01').getAttribute('fill')") == grey,
                   5, "q01 grey once its aggregate is cleared")
        assert js(browser, "return document.querySelector('#district-row-q01 .mean').textContent") == "–"

        # Ages tick: the station's age grows without new messages.
        first = js(browser, f"return document.querySelector('{row} .age').textContent")
        wait_until(lambda: js(browser, f"return document.querySelector('{row} .age').textContent") != first, 3,
                   "the age ticking")

        assert page_problems(browser) == []
    finally:
        # Retained messages outlive the test: clear them (an empty retained payload) for the screenshot.
        for topic in ("meta/sensors/tls-9063",):
            fleet.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        for topic in ("agg/q05/temp", "agg/q01/temp", "agg/q05/humidity"):
            processor.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        fleet.close()
        processor.close()


def test_latency_publish_to_page(web, broker, browser):
    """100 readings, one at a time: from just before publish() to the value being in the page's table.
    Two figures: the page's own record of when it wrote the cell, and when this test's polling saw it
    (an upper bound, polling included): the assertion is on the upper bound."""
    open_page(browser, web)
    fleet = Publisher(broker, "fleet")
    cell = "#sensor-tls-9999 .v-temp"
    in_page, observed = [], []
    try:
        for i in range(100):
            value = round(10 + i * 0.1, 1)
            t0 = time.time()
            fleet.client.publish("iot/q01/tls-9999/temp", json.dumps(
                {"ts": iso(datetime.now(UTC)), "type": "temp", "value": value, "sensor_id": "tls-9999"}), qos=1)

            def shown(expected=f"{value:.1f}"):
                got = js(browser, f"const c = document.querySelector('{cell}'); return c && [c.textContent, c.dataset.shown]")
                return got if got and got[0] == expected else None

            text, shown_ms = wait_until(shown, 5, f"reading {i} on the page", interval=0.002)
            observed.append(time.time() - t0)
            in_page.append(int(shown_ms) / 1000 - t0)
    finally:
        fleet.close()
    p95 = statistics.quantiles(observed, n=20)[-1]
    p95_page = statistics.quantiles(in_page, n=20)[-1]
    print(f"\npublish -> page over {len(observed)} readings: in-page p50 {statistics.median(in_page) * 1000:.1f} ms, "
          f"p95 {p95_page * 1000:.1f} ms, max {max(in_page) * 1000:.1f} ms; observed by polling p50 "
          f"{statistics.median(observed) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {max(observed) * 1000:.1f} ms")
    assert p95 < 1.0
    assert page_problems(browser) == []


def test_csp_blocks_inline_code_in_the_browser(web, browser):
    """The CSP is enforced, and the violation detector behind `page_problems() == []` does see one."""
    open_page(browser, web)
    ran = js(browser, """
        const s = document.createElement('script'); s.textContent = 'window.__inline = 1';
        document.body.appendChild(s); return window.__inline === 1;""")
    assert ran is False
    wait_until(lambda: js(browser, "return window.__violations.length"), 3, "a violation event")
    problems = page_problems(browser)
    assert any("script-src" in p for p in problems), problems


# -- the screenshot: the page with a realistic fleet ----------------------------------------------------
def realistic_fleet() -> list[dict]:
    """The fleet's own 77 stations (simulator/iot_simulator/fleet/stations.json, from Toulouse Métropole's
    open data) as its meta/sensors/{id} payloads."""
    doc = json.loads(STATIONS.read_text(encoding="utf-8"))
    keys = ("sensor_id", "name", "district", "district_name", "commune", "lat", "lon", "altitude", "kind", "types")
    return [{k: station[k] for k in keys} for station in doc["stations"]]


def test_screenshot_with_a_realistic_fleet(web, broker, browser, tmp_path):
    """The fleet's 77 stations with a plausible late afternoon (an urban heat island around the Capitole,
    humidity falling as it warms, pressure from altitude); the page opened first, as a visitor's would
    be, then the readings and the processor's aggregates arrive live."""
    stations = realistic_fleet()
    rng = random.Random(12)
    centre = (1.4442, 43.6045)  # Capitole
    now = datetime.now(UTC)
    readings: dict[tuple[str, str], list[float]] = {}
    fleet, processor = Publisher(broker, "fleet"), Publisher(broker, "processor")
    try:
        for station in stations:
            fleet.publish(f"meta/sensors/{station['sensor_id']}", station, retain=True)
        open_page(browser, web)
        wait_until(lambda: js(browser, "return document.querySelectorAll('#stations tbody tr').length") == len(stations),
                   10, "every station's row from the retained meta")
        expected = {}
        for station in stations:
            km = math.hypot((station["lon"] - centre[0]) * 80.6, (station["lat"] - centre[1]) * 111.2)
            temp = 17.2 + 3.4 * math.exp(-(km / 4.5) ** 2) + rng.gauss(0, 0.35)
            values = {"temp": temp, "humidity": 52 - 2.2 * (temp - 17) + rng.gauss(0, 1.5),
                      "pressure": 1016.5 - station["altitude"] / 8.3 + rng.gauss(0, 0.2)}
            ts = iso(now - timedelta(seconds=rng.uniform(0.5, 14)))
            for kind in station["types"]:
                value = round(values[kind], 0 if kind == "humidity" else 1)
                fleet.publish(f"iot/{station['district']}/{station['sensor_id']}/{kind}",
                              {"ts": ts, "type": kind, "value": value, "sensor_id": station["sensor_id"]})
                readings.setdefault((station["district"], kind), []).append(value)
                expected[(station["sensor_id"], kind)] = value
        for (district, kind), values in sorted(readings.items()):
            processor.publish(f"agg/{district}/{kind}", {
                "district": district, "type": kind, "mean": round(statistics.fmean(values), 2), "min": min(values),
                "max": max(values), "n": len(values), "window_s": 300, "ts": iso(now)}, retain=True)
    finally:
        fleet.close()
        processor.close()

    last_sensor, last_kind = list(expected)[-1]
    wait_until(lambda: js(browser, f"return document.querySelector('#sensor-{last_sensor} .v-{last_kind}').textContent")
               != "–", 10, "the last reading")
    shown = js(browser, "return Array.from(document.querySelectorAll('#stations tbody tr')).map("
                        "r => [r.dataset.sensor, r.querySelector('.v-temp').textContent])")
    assert {sensor: text for sensor, text in shown} == {sensor: f"{v:.1f}" for (sensor, kind), v in expected.items()
                                                        if kind == "temp"}
    toulouse = {s["district"] for s in stations if s["district"].startswith("q")}
    assert len(toulouse) == 20  # every district holds a station (the data's README)
    wait_until(lambda: js(browser, "return Array.from(document.querySelectorAll('#map-svg path.district')).filter("
                                   "p => p.getAttribute('data-mean')).length") == 20, 5, "20 coloured districts")
    in_toulouse = sum(1 for s in stations if s["district"].startswith("q"))
    assert js(browser, "return document.querySelectorAll('#station-dots circle').length") >= in_toulouse
    time.sleep(1.2)  # the ages' first tick
    assert page_problems(browser) == []
    png = browser.get_screenshot_as_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "page.png").write_bytes(png)
    update = os.environ.get("UPDATE_SCREENSHOT") == "1"
    if update:
        SCREENSHOT.write_bytes(png)
    also = f" and {SCREENSHOT}" if update else " (UPDATE_SCREENSHOT=1 also writes docs/mqtt/page.png)"
    print(f"\nscreenshot: {tmp_path / 'page.png'}{also}")
