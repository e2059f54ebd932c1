"""Hostile and malformed input: every one is a 4xx in the API's error body, never a 500, and a
bad id never reaches the Kubernetes API."""

from __future__ import annotations

import base64
import gzip
import json
from http.client import HTTPConnection
from urllib.parse import urlsplit

import httpx
import pytest

from tether.api.interaction import INTERACTION_ID


@pytest.fixture(scope="module")
def http(stack, api_key):
    with httpx.Client(base_url=stack.url, headers={"x-goog-api-key": api_key}, timeout=30) as c:
        yield c


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"}, body
    return response.status_code, body["error"]["code"], body["error"]["message"]


def create(http, **fields) -> httpx.Response:
    return http.post("/v1/interactions", json={"model": "echo", "input": "hi", **fields})


def post_raw(http, body: bytes, **headers: str) -> httpx.Response:
    return http.post(
        "/v1/interactions",
        content=body,
        headers={"content-type": "application/json", **headers},
    )


# --- ids (C1) ----------------------------------------------------------------------------

BAD_IDS = {
    "%2e": ".",
    "%2e%2e": "..",
    "%2E": ".",
    "a%2Fb": "a/b",
    "%2e%2e%2f": "../",
    "..%5c": "..\\",
    "IX-ABC": "IX-ABC",
    "ix_abc": "ix_abc",
    "-ix": "-ix",
    "x" * 64: "x" * 64,
    "%20": " ",
    "%00": "\x00",
}
ROUTES = [
    ("GET", "/v1/interactions/{}"),
    ("DELETE", "/v1/interactions/{}"),
    ("POST", "/v1/interactions/{}/cancel"),
    ("GET", "/v1beta/interactions/{}"),
    ("DELETE", "/v1beta/interactions/{}"),
    ("GET", "/v1/interactions/{}/files"),
    ("GET", "/v1/interactions/{}/files/a.txt"),
    ("GET", "/v1/interactions/{}/logs"),
]


@pytest.mark.parametrize("method, route", ROUTES)
@pytest.mark.parametrize("raw, decoded", BAD_IDS.items(), ids=list(BAD_IDS))
def test_a_path_id_that_is_not_an_interaction_id_is_a_400_naming_it(
    http, method, route, raw, decoded
):
    status, code, message = error_of(http.request(method, route.format(raw)))
    assert (status, code) == (400, "invalid_argument")
    assert message.startswith(f"interaction id {decoded!r} is not an interaction id")


@pytest.mark.parametrize("segment", [".", ".."])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_literal_dot_segments_are_a_400_too(stack, api_key, method, segment):
    # httpx (like browsers) folds dot segments away; a raw client sends them as they are
    url = urlsplit(stack.url)
    connection = HTTPConnection(url.hostname, url.port, timeout=30)
    connection.request(method, f"/v1/interactions/{segment}", headers={"x-goog-api-key": api_key})
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 400
    assert body["error"]["message"].startswith(f"interaction id {segment!r} is not")


def test_deleting_dot_deletes_nothing(http):
    kept = [create(http, background=True).json()["id"] for _ in range(2)]
    for raw in ("%2e", "%2e%2e", "%2E"):
        status, _, _ = error_of(http.delete(f"/v1/interactions/{raw}"))
        assert status == 400
    for id_ in kept:
        assert http.get(f"/v1/interactions/{id_}").status_code == 200


def test_ids_the_gateway_makes_match_the_pattern_it_checks(http):
    assert INTERACTION_ID.match(create(http, background=True).json()["id"])


@pytest.mark.parametrize("previous", ["", "..", ".", "a/b", "IX-1", "x" * 64])
def test_a_previous_interaction_id_that_is_not_an_id_is_a_400(http, previous):
    status, code, message = error_of(create(http, previous_interaction_id=previous))
    assert (status, code) == (400, "invalid_argument")
    assert message.startswith(f"previous_interaction_id: the id {previous!r} is not an")


# --- malformed bodies (M6) ----------------------------------------------------------------


def test_a_body_that_is_not_utf8_is_a_400(http):
    status, _, message = error_of(post_raw(http, b'{"model": "echo", "input": "caf\xe9"}'))
    assert status == 400
    assert message.startswith("request body is not valid utf-8")


def test_a_latin1_body_is_read_as_its_declared_charset(http):
    body = '{"model": "echo", "input": "café"}'.encode("latin-1")
    response = post_raw(http, body, **{"content-type": "application/json; charset=latin-1"})
    assert response.status_code == 200, response.text
    assert response.json()["steps"][0]["content"][0]["text"] == "café"


def test_an_unknown_charset_is_a_400_naming_it(http):
    response = post_raw(
        http,
        b'{"model": "echo", "input": "x"}',
        **{"content-type": "application/json; charset=bogus"},
    )
    assert error_of(response)[::2] == (400, "unknown charset 'bogus' in content-type")


def test_a_gzip_body_that_does_not_decompress_is_a_400(http):
    status, _, message = error_of(
        post_raw(http, b"not gzip at all", **{"content-encoding": "gzip"})
    )
    assert status == 400
    assert "content-encoding: gzip" in message


def test_a_gzip_body_is_read(http):
    body = gzip.compress(b'{"model": "echo", "input": "zipped"}')
    response = post_raw(http, body, **{"content-encoding": "gzip"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("kind", [{}, {"a": 1}, [], ["text"]])
def test_an_input_item_whose_type_is_not_a_string_is_a_400_naming_it(http, kind):
    status, _, message = error_of(create(http, input=[{"type": kind, "text": "x"}]))
    assert status == 400
    assert message.startswith("input[0].type:")


def nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"p": value}
    return value


def too_deep(response: httpx.Response) -> bool:
    status, _, message = error_of(response)
    return status == 400 and "more than 64 levels deep" in message


def test_json_nested_a_thousand_deep_is_a_400(http):
    assert too_deep(post_raw(http, b"[" * 1000 + b"]" * 1000))
    deep_input = b'{"model": "echo", "input": ' + b'{"p": ' * 900 + b"1" + b"}" * 901
    assert too_deep(post_raw(http, deep_input))


def test_deep_tool_parameters_or_contents_are_a_400(http):
    tool = {"type": "function", "name": "f", "parameters": nested(500)}
    assert too_deep(create(http, tools=[tool]))
    assert too_deep(create(http, input=[{"type": "text", "text": "x", "extra": nested(500)}]))


def test_a_tool_schema_nested_a_realistic_depth_is_accepted(http):
    schema = {"type": "object", "properties": {"a": nested(40, {"type": "string"})}}
    response = create(http, tools=[{"type": "function", "name": "f", "parameters": schema}])
    assert response.status_code == 200, response.text


def test_an_integer_over_4300_digits_is_a_400(http):
    body = b'{"model": "echo", "input": "x", "generation_config": {"seed": ' + b"9" * 5000 + b"}}"
    status, _, message = error_of(post_raw(http, body))
    assert status == 400
    assert message.startswith("request body is not valid JSON")


def test_nan_is_not_json(http):
    body = b'{"model": "echo", "input": "x", "generation_config": {"temperature": NaN}}'
    assert error_of(post_raw(http, body))[::2] == (
        400,
        "request body is not valid JSON: NaN is not a JSON value",
    )


@pytest.mark.parametrize("tail", ["abc", "1e3", "-1", "0", "9" * 5000, "1.5"])
def test_a_tail_lines_that_is_not_a_count_is_a_400(http, tail):
    id_ = create(http, background=True).json()["id"]
    status, _, message = error_of(
        http.get(f"/v1/interactions/{id_}/logs", params={"tail_lines": tail})
    )
    assert status == 400
    assert message.startswith("tail_lines must be a whole number")


# --- queries and limits (Low) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "event_id", ["18446744073709551616-0", "0-18446744073709551616", "9" * 40 + "-0"]
)
def test_a_last_event_id_beyond_64_bits_is_a_400(http, event_id):
    id_ = create(http, background=True).json()["id"]
    response = http.get(
        f"/v1/interactions/{id_}", params={"stream": "true", "last_event_id": event_id}
    )
    status, _, message = error_of(response)
    assert status == 400
    assert message.startswith(f"last_event_id {event_id!r} is not an event id")


def test_a_made_up_page_token_is_a_400_naming_it(http):
    status, _, message = error_of(http.get("/v1/interactions", params={"page_token": "bogus"}))
    assert status == 400
    assert message.startswith("page_token 'bogus' is not valid or has expired")


def test_a_page_token_for_a_resource_version_never_reached_is_a_400(http):
    made_up = {"v": "meta.k8s.io/v1", "rv": 10**12, "start": "ix-0\u0000"}
    token = base64.urlsafe_b64encode(json.dumps(made_up).encode()).decode().rstrip("=")
    status, _, message = error_of(http.get("/v1/interactions", params={"page_token": token}))
    assert status == 400
    assert message.startswith(f"page_token {token!r} is not valid or has expired")


def test_an_unknown_status_filter_is_a_400_listing_the_statuses(http):
    status, _, message = error_of(http.get("/v1/interactions", params={"status": "bogus"}))
    assert status == 400
    assert message.startswith("status 'bogus' is not one of queued, in_progress, requires_action")


def test_a_url_or_header_over_8_kib_gets_the_api_error_body(http):
    long = "x" * 16_000
    status, _, message = error_of(http.get("/v1/interactions", params={"status": long}))
    assert status == 400 and message.startswith("status 'xxx")
    response = http.get("/v1/interactions", headers={"x-padding": long})
    assert response.status_code == 200


# --- answers to function calls (Low) --------------------------------------------------------


@pytest.fixture(scope="module")
def asked(stack, http) -> dict:
    """An interaction that ended requires_action, awaiting two function calls."""
    stack.cluster.apply(
        {
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "two-calls", "namespace": "tenant-a"},
            "spec": {
                "provider": "scripted",
                "responses": [
                    {"functionCalls": [{"name": "weather"}, {"name": "time"}]},
                    {"text": "thanks"},
                ],
            },
        }
    )
    asked = http.post("/v1/interactions", json={"model": "two-calls", "input": "go"}).json()
    assert asked["status"] == "requires_action", asked
    return asked


def answer(http, asked, *results) -> httpx.Response:
    return http.post(
        "/v1/interactions",
        json={"model": "two-calls", "previous_interaction_id": asked["id"], "input": list(results)},
    )


def result(call_id: str | None) -> dict:
    step = {"type": "function_result", "result": {"ok": True}}
    return step if call_id is None else {**step, "call_id": call_id}


def test_text_after_requires_action_is_a_400_naming_the_awaited_call_ids(http, asked):
    ids = [step["id"] for step in asked["steps"]]
    response = answer(http, asked, {"type": "text", "text": "never mind"})
    status, _, message = error_of(response)
    assert status == 400
    assert f"awaits a function_result for call_id {ids[0]!r}, {ids[1]!r}" in message


def test_a_function_result_for_an_unknown_call_is_a_400_naming_it(http, asked):
    ids = [step["id"] for step in asked["steps"]]
    status, _, message = error_of(answer(http, asked, result(ids[0]), result("made-up")))
    assert status == 400
    assert "function_result call_id 'made-up' answers no function call" in message


def test_a_function_result_without_a_call_id_is_a_400(http, asked):
    status, _, message = error_of(answer(http, asked, result(None)))
    assert status == 400
    assert message.endswith("a function_result needs the call_id of the function_call it answers")
    status, _, _ = error_of(create(http, input=[result(None)]))
    assert status == 400


def test_answering_every_awaited_call_continues_the_conversation(http, asked):
    response = answer(http, asked, *(result(step["id"]) for step in asked["steps"]))
    assert response.status_code == 200, response.text
    assert response.json()["steps"][-1]["content"][0]["text"] == "thanks"


# --- settings a model would ignore (Low) ----------------------------------------------------

IMAGE = {"type": "image", "mime_type": "image/png", "data": "iVBORw0KGgo="}


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"tools": [{"type": "google_search"}]}, "tools[0]: the built-in tool 'google_search'"),
        ({"tools": [{"type": "code_execution"}]}, "tools[0]: the built-in tool 'code_execution'"),
        ({"generation_config": {"thinking_level": "high"}}, "generation_config.thinking_level"),
        (
            {"generation_config": {"thinking_summaries": "auto"}},
            "generation_config.thinking_summaries",
        ),
        ({"generation_config": {"tool_choice": "any"}}, "generation_config.tool_choice"),
        ({"response_mime_type": "application/json"}, "response_mime_type 'application/json'"),
        ({"response_format": {"type": "object"}}, "response_format"),
        ({"input": [{"type": "text", "text": "what is it?"}, IMAGE]}, "input: image content"),
    ],
)
def test_what_the_echo_model_would_ignore_is_a_400_naming_it(http, fields, named):
    before = len(http.get("/v1/interactions", params={"page_size": 1000}).json()["interactions"])
    status, _, message = error_of(create(http, **fields))
    assert status == 400
    assert message.startswith(named)
    assert "model 'echo' (provider echo)" in message or "needs" in message
    after = len(http.get("/v1/interactions", params={"page_size": 1000}).json()["interactions"])
    assert after == before
