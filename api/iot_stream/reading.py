"""A reading on MQTT: valid exactly when POST /data would accept its payload as one reading
(iot_api.readings, the one implementation of the rules), plus what MQTT adds: `ts` is required (a
message may be delivered late or twice: server time would make each copy a new point), and the topic
`iot/{district}/{sensor_id}/{type}` agrees with the payload. The historian and the processor both
judge readings here, so a reading one stores is a reading the other counts."""
from __future__ import annotations

import re

import orjson
from iot_api.readings import InvalidBody, Limits, parse_body

# A district: a lowercase slug (q01..q20, or a commune: docs/mqtt.md), safe as a tag and a topic level.
DISTRICT_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}", re.ASCII)


class Invalid(Exception):
    """A message that can never be used: `error` and the api's `problems` (field and message each)."""

    def __init__(self, error: str, problems: list[dict] | None = None):
        super().__init__(error)
        self.error = error
        self.problems = problems or []

    def __str__(self) -> str:
        return "; ".join([self.error] + [f"{p['field']} {p['message']}" for p in self.problems])


def parse(topic: str, payload: bytes, limits: Limits) -> tuple[str, str, str, str, dict]:
    """(line protocol line, district, sensor_id, type, the payload as a dict) of a reading on TOPIC.
    Raises Invalid. The line is the api's own: the same point, so a redelivery overwrites itself."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "iot" or not all(parts):
        raise Invalid("topic must be iot/{district}/{sensor_id}/{type}")
    _, district, sensor_id, kind = parts
    if not DISTRICT_RE.fullmatch(district):
        raise Invalid("the topic's district must be a lowercase slug (q01..q20, or a commune)")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"malformed JSON: {exc}") from None
    if type(doc) is not dict:
        raise Invalid("payload must be one reading object (an MQTT message carries one reading)")
    problems = [] if "ts" in doc else [{"index": None, "field": "ts", "message": "is required on MQTT"}]
    try:
        lines, _ = parse_body(payload, limits)
    except InvalidBody as exc:
        raise Invalid(exc.error if not problems else "the reading is invalid", problems + exc.problems) from None
    if problems:
        raise Invalid("the reading is invalid", problems)
    line = lines[0]
    # The line starts with its measurement and tags exactly as the topic's would: a cheap, exact check
    # of both tags (an integer sensor id 63 and the topic's "63" are the same tag value).
    if not line.startswith(f"{limits.measurement},sensor_id={sensor_id},type={kind} "):
        problems = [{"index": None, "field": field, "message": f"differs from the topic's {field} {want!r}"}
                    for field, want in (("sensor_id", sensor_id), ("type", kind)) if str(doc.get(field)) != want]
        raise Invalid("the topic and the payload disagree", problems)
    return line, district, sensor_id, kind, doc
