"""Property-based fuzz of the real api, driven by its own OpenAPI document (schemathesis + hypothesis).

Issue: "A property-based fuzz of POST /data from the OpenAPI document ... finding no 5xx."
The live /openapi.json of a `python -m iot_api` server is loaded with schemathesis; hypothesis draws
schema-conforming (positive) and schema-violating (negative) requests from it, sends them, and checks
each answer: no server error, a documented status code, a documented content type and headers, a body
that matches the documented schema, and negative data refused. Runs are derandomized (the same
examples every time) and bounded (max_examples), so a failure reproduces and the file stays fast.
"""
from __future__ import annotations

import copy

import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]
GET_OPERATIONS = ["/data", "/sensors", "/sensors/{id}/stats", "/sensors/{id}/histogram", "/top",
                  "/healthz", "/readyz", "/metrics", "/openapi.json"]


def bounded(max_examples: int):
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink], print_blob=True,
                    suppress_health_check=list(HealthCheck))


def strategy(schema, path: str, method: str):
    operation = schema[path][method]
    return st.one_of(operation.as_strategy(generation_mode=mode) for mode in GenerationMode)


# An explicit configuration (no schemathesis.toml discovery). 413 is how the api refuses a batch over
# maxItems (documented); it counts as a rejection of negative data, like 400 and 422.
CONFIG = {"checks": {"negative_data_rejection": {"expected-statuses": [
    400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]}}}


def load(api):
    return schemathesis.openapi.from_url(api.url + "/openapi.json", config=schemathesis.Config.from_dict(CONFIG),
                                         timeout=10)


def run(api, cases, max_examples: int):
    session = requests.Session()  # keep-alive: a few ms per example

    @bounded(max_examples)
    @given(case=cases)
    def fuzz(case):
        case.call_and_validate(base_url=api.url, session=session, checks=CHECKS)

    try:
        fuzz()
    finally:
        session.close()


def test_fuzz_post_data(api, influxdb):
    """300 examples of POST /data, positive and negative, seeded: no 5xx, and every answer as documented."""
    before = influxdb.count(api.db)
    run(api, strategy(load(api), "/data", "POST"), max_examples=300)
    # The api is still healthy and still stores readings.
    status, _, body = api.post("/data", {"type": "temp", "value": 1, "sensor_id": "after-fuzz"})
    assert (status, body) == (201, {"stored": 1})
    assert influxdb.count(api.db, "WHERE sensor_id = 'after-fuzz'") == 1
    assert influxdb.count(api.db) >= before + 1


def test_fuzz_read_endpoints(api):
    """The GET endpoints, with a few readings stored so that answers have content to check."""
    readings = [{"ts": f"2017-06-25T09:53:1{i}Z", "type": typ, "value": 20 + i, "sensor_id": sid}
                for i, (sid, typ) in enumerate([("1", "temp"), ("a", "temp"), ("a", "humidity"), ("0", "A")])]
    readings.append({"type": "temp", "value": -3.5, "sensor_id": "now"})  # server time: shows in /top windows
    assert api.post("/data", readings)[0] == 201
    schema = load(api)
    run(api, st.one_of(strategy(schema, path, "GET") for path in GET_OPERATIONS), max_examples=400)


# -- hand-picked answers, checked against the document the same way --------------------------------
COURSE = {"ts": "2017-06-25T09:53:16Z", "type": "temp", "value": 34, "sensor_id": 123}


@pytest.mark.parametrize("body, media_type, status", [
    (COURSE, "application/json", 201),
    ([COURSE, {**COURSE, "sensor_id": "pi-1"}], "application/json", 201),
    ({**COURSE, "value": "hot"}, "application/json", 422),
    ([], "application/json", 422),
    ("hello", "text/plain", 415),
], ids=["course-payload", "batch", "bad-value", "empty-batch", "text-plain"])
def test_documented_answers(api, body, media_type, status):
    case = load(api)["/data"]["POST"].Case(body=body, media_type=media_type)
    response = case.call(base_url=api.url)
    assert response.status_code == status, response.text
    case.validate_response(response, checks=CHECKS)


def test_partly_rejected_answer_matches_the_document(api, influxdb):
    """When InfluxDB itself refuses readings (here a field-type conflict: `value` already stored as an
    integer in that shard), the api answers 422 with `stored` and `rejected`; that answer must match
    the documented 422 schema too."""
    status, _ = influxdb.write(api.db, "data,sensor_id=conflict,type=temp value=1i 1498380000000000000\n")
    assert status == 204
    case = load(api)["/data"]["POST"].Case(body=[{**COURSE, "sensor_id": "conflict"}], media_type="application/json")
    response = case.call(base_url=api.url)
    assert response.status_code == 422, response.text
    assert response.json()["stored"] == 0 and response.json()["rejected"][0]["index"] == 0
    case.validate_response(response, checks=CHECKS)


# -- the document itself -----------------------------------------------------------------------------
def test_openapi_document_is_valid_openapi_3_1(api):
    schema = load(api)
    schema.validate()  # the OpenAPI 3.1 meta-schema, as schemathesis ships it
    raw = schema.raw_schema
    assert raw["openapi"].startswith("3.1.")

    # Every schema in it is a valid JSON Schema 2020-12 schema (OpenAPI 3.1's dialect) ...
    def schemas(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "schema" and isinstance(value, dict):
                    yield value
                yield from schemas(value)
        elif isinstance(node, list):
            for value in node:
                yield from schemas(value)

    found = [*schemas(raw["paths"]), *raw["components"]["schemas"].values()]
    assert len(found) > 20
    for sub in found:
        jsonschema_rs.meta.validate(sub)

    # ... and the wire format of DESIGN.md, the course's payload, is what it describes.
    validator = jsonschema_rs.validator_for(
        {**raw["paths"]["/data"]["post"]["requestBody"]["content"]["application/json"]["schema"],
         "components": raw["components"]})
    course = {"ts": "2017-06-25T09:53:16Z", "type": "temp", "value": 34, "sensor_id": 123}
    assert validator.is_valid(course)
    assert validator.is_valid([course, {**course, "sensor_id": "pi-1", "value": 21.5}])
    assert not validator.is_valid([])
    assert not validator.is_valid({**course, "unit": "C"})
    assert not validator.is_valid({k: v for k, v in course.items() if k != "value"})

    # The validation is real: a broken copy of the document is refused.
    broken = copy.deepcopy(raw)
    del broken["info"]
    with pytest.raises(jsonschema_rs.ValidationError):
        schemathesis.openapi.from_dict(broken).validate()


def test_openapi_document_states_this_instances_limits(start_api):
    api = start_api(env={"API_MAX_BATCH": "10", "API_MAX_BODY_BYTES": "4096", "API_READ_LIMIT_MAX": "50"})
    raw = load(api).raw_schema
    post = raw["paths"]["/data"]["post"]
    batch = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]
    assert batch["maxItems"] == 10
    assert "4096" in post["requestBody"]["description"]
    limit = next(p for p in raw["paths"]["/data"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 50
