"""The page's static files: what the CSP and the offline rule need to hold before a browser sees them
(tests/integration/test_web_page.py then checks a real browser reports no violation), the vendored MQTT.js
being the version its note names, and districts.json's shape."""
from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "web" / "site"
VENDOR_NOTE = SITE / "vendor" / "README.md"


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.script_text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        if self.tags and self.tags[-1][0] in ("script", "style"):
            self.script_text += data.strip()


def test_index_has_no_inline_code_and_loads_only_its_own_files():
    page = Tags()
    page.feed((SITE / "index.html").read_text(encoding="utf-8"))
    assert page.script_text == ""  # no inline script or style element (the CSP would block it)
    for tag, attrs in page.tags:
        assert "style" not in attrs, tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)  # no inline handlers
        if tag == "style":
            raise AssertionError("a <style> element")
        for name in ("src", "href"):
            url = attrs.get(name)
            if url is None or tag == "a":
                continue  # a link is navigation, not a load
            assert url and not re.match(r"^([a-z]+:)?//", url), (tag, url)
            assert (SITE / url).is_file(), url
    assert "Données: Toulouse Métropole, open data, ODbL" in (SITE / "index.html").read_text(encoding="utf-8")


def test_scripts_and_styles_fetch_nothing_from_elsewhere():
    for name in ("app.js", "style.css"):
        text = (SITE / name).read_text(encoding="utf-8")
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), name  # the SVG namespace is a name, not a load
        assert "@import" not in text and "eval(" not in text and "innerHTML" not in text, name


def test_vendored_mqtt_js_is_the_version_its_note_names():
    note = VENDOR_NOTE.read_text(encoding="utf-8")
    digest = re.search(r"sha256 of `mqtt.min.js`: `([0-9a-f]{64})`", note).group(1)
    script = (SITE / "vendor" / "mqtt.min.js").read_bytes()
    assert hashlib.sha256(script).hexdigest() == digest
    assert b"new Function" not in script and b"eval(" not in script  # the CSP has no 'unsafe-eval'
    assert "MIT" in (SITE / "vendor" / "mqtt.LICENSE.md").read_text(encoding="utf-8")


def test_districts_json_has_the_20_districts_and_a_projection():
    data = json.loads((SITE / "districts.json").read_text(encoding="utf-8"))
    assert [d["id"] for d in data["districts"]] == [f"q{n:02d}" for n in range(1, 21)]
    assert data["attribution"] == "Données: Toulouse Métropole, open data, ODbL"
    width, height = data["viewBox"][2:]
    p = data["projection"]
    for d in data["districts"]:
        assert re.fullmatch(r"(M[-\d.,L]+Z)+", d["path"]), d["id"]
        numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d["path"])]
        assert 0 <= min(numbers) and max(numbers[0::2]) <= width and max(numbers[1::2]) <= height, d["id"]
        # The label point, projected with the published formula, is where the file says.
        x = p["x0"] + (d["label"]["lon"] - p["lon0"]) * p["kx"]
        y = p["y0"] - (d["label"]["lat"] - p["lat0"]) * p["ky"]
        assert abs(x - d["label"]["x"]) < 0.2 and abs(y - d["label"]["y"]) < 0.2, d["id"]
