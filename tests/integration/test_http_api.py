"""The HTTP contract where the SDK cannot go: malformed bodies, listing, OpenAPI, metrics."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="module")
def http(stack, api_key):
    with httpx.Client(base_url=stack.url, headers={"x-goog-api-key": api_key}, timeout=30) as c:
        yield c


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    return response.status_code, body["error"]["code"], body["error"]["message"]


def test_invalid_json_is_a_400_saying_so(http):
    status, code, message = error_of(
        http.post(
            "/v1/interactions",
            content=b'{"model": "echo",',
            headers={"content-type": "application/json"},
        )
    )
    assert (status, code) == (400, "invalid_argument")
    assert message.startswith("request body is not valid JSON")


def test_missing_input_is_a_400_naming_the_field(http):
    status, _, message = error_of(http.post("/v1/interactions", json={"model": "echo"}))
    assert status == 400
    assert message == "input: Field required"


def test_both_model_and_agent_is_a_400(http):
    status, _, message = error_of(
        http.post("/v1/interactions", json={"model": "echo", "agent": "eva", "input": "x"})
    )
    assert status == 400
    assert message == "model and agent are mutually exclusive: set exactly one"


def test_an_unknown_field_is_a_400_naming_it(http):
    status, _, message = error_of(
        http.post("/v1/interactions", json={"model": "echo", "input": "x", "temprature": 1})
    )
    assert (status, message) == (400, "temprature: unknown field")


def test_an_oversized_body_is_a_413_and_creates_nothing(http):
    before = len(http.get("/v1/interactions", params={"page_size": 1000}).json()["interactions"])
    status, code, message = error_of(
        http.post("/v1/interactions", json={"model": "echo", "input": "x" * (2 * 1024 * 1024)})
    )
    assert (status, code) == (413, "payload_too_large")
    assert "1048576 bytes" in message
    after = len(http.get("/v1/interactions", params={"page_size": 1000}).json()["interactions"])
    assert after == before


def test_a_bearer_token_works_like_the_api_key_header(stack, api_key):
    response = httpx.post(
        f"{stack.url}/v1beta/interactions",
        json={"model": "echo", "input": "bearer"},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert response.status_code == 200
    assert response.json()["steps"][0]["content"][0]["text"] == "bearer"


def test_no_key_is_a_401_saying_where_to_put_it(stack):
    status, code, message = error_of(httpx.get(f"{stack.url}/v1/interactions"))
    assert (status, code) == (401, "unauthenticated")
    assert "x-goog-api-key" in message


def test_a_malformed_resume_id_is_a_400(http):
    created = http.post("/v1/interactions", json={"model": "echo", "input": "x"}).json()
    status, _, message = error_of(
        http.get(
            f"/v1/interactions/{created['id']}", params={"stream": "true", "last_event_id": "abc"}
        )
    )
    assert status == 400
    assert "last_event_id 'abc'" in message


def test_the_last_event_id_header_resumes_too(http):
    created = http.post("/v1/interactions", json={"model": "echo", "input": "a b c"}).json()
    with http.stream("GET", f"/v1/interactions/{created['id']}", params={"stream": "true"}) as r:
        ids = [line[4:] for line in r.iter_lines() if line.startswith("id: ")]
    with http.stream(
        "GET",
        f"/v1/interactions/{created['id']}",
        params={"stream": "true"},
        headers={"Last-Event-ID": ids[2]},
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        resumed = [line[4:] for line in r.iter_lines() if line.startswith("id: ")]
    assert resumed == ids[3:]


def test_list_pages_and_filters_by_status_and_label(http):
    tagged = [
        http.post(
            "/v1/interactions", json={"model": "echo", "input": f"n{i}", "labels": {"batch": "b7"}}
        ).json()["id"]
        for i in range(3)
    ]
    first = http.get("/v1/interactions", params={"label": "batch:b7", "page_size": 2}).json()
    assert len(first["interactions"]) == 2
    rest = http.get(
        "/v1/interactions",
        params={"label": "batch:b7", "page_size": 2, "page_token": first["next_page_token"]},
    ).json()
    assert "next_page_token" not in rest
    listed = [i["id"] for i in first["interactions"] + rest["interactions"]]
    assert sorted(listed) == sorted(tagged)
    completed = http.get(
        "/v1/interactions", params={"label": "batch:b7", "status": "completed"}
    ).json()
    assert len(completed["interactions"]) == 3
    none = http.get("/v1/interactions", params={"label": "batch:b7", "status": "failed"}).json()
    assert none["interactions"] == []


def test_a_bad_label_is_a_400_naming_it(http):
    status, _, message = error_of(
        http.post("/v1/interactions", json={"model": "echo", "input": "x", "labels": {"Team": "a"}})
    )
    assert status == 400
    assert "label key 'Team'" in message


def test_the_openapi_document_describes_the_endpoint(stack):
    document = httpx.get(f"{stack.url}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert {"post", "get"} <= set(document["paths"]["/v1/interactions"])
    create = document["components"]["schemas"]["CreateInteractionRequest"]
    assert {"model", "agent", "input", "previous_interaction_id", "background", "stream"} <= set(
        create["properties"]
    )


def test_metrics_count_requests_and_final_statuses(stack, http):
    http.post("/v1/interactions", json={"model": "echo", "input": "count me"})
    gateway = httpx.get(f"{stack.url}/metrics").text
    assert (
        'tether_gateway_requests_total{code="200",method="POST",route="/v1/interactions"}'
        in gateway
    )
    assert "tether_gateway_request_duration_seconds_bucket" in gateway
    operator = httpx.get(stack.operator_metrics_url).text
    assert 'tether_interactions_total{kind="model",status="completed"}' in operator
    assert "tether_interaction_duration_seconds_bucket" in operator
    assert 'tether_interactions_in_flight{kind="model"}' in operator


def test_a_quiet_stream_gets_keepalive_comments(http):
    created = http.post(
        "/v1/interactions", json={"model": "echo", "input": "/sleep 2", "background": True}
    ).json()
    with http.stream("GET", f"/v1/interactions/{created['id']}", params={"stream": "true"}) as r:
        lines = list(r.iter_lines())
    comments = [line for line in lines if line.startswith(":")]
    assert len(comments) >= 2  # the test stack pings every 0.5 s; the default is 15 s
    assert any('"interaction.completed"' in line for line in lines)


def test_an_unknown_agent_is_a_404_naming_it(http):
    status, code, message = error_of(
        http.post("/v1/interactions", json={"agent": "deep-research-pro", "input": "x"})
    )
    assert (status, code, message) == (404, "not_found", "agent 'deep-research-pro' not found")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"environment": "env-123"}, "environment applies only to agent interactions"),
        ({"environment": "remote"}, "environment applies only to agent interactions"),
    ],
)
def test_settings_nothing_would_act_on_are_refused_not_ignored(http, extra, message):
    status, _, text = error_of(
        http.post("/v1/interactions", json={"model": "echo", "input": "x", **extra})
    )
    assert status == 400
    assert message in text
