"""The Agents API through the google-genai SDK: a tenant's agents are Agent resources in its
namespace; the platform's are readable by all and changeable by none; a custom agent created
over HTTP runs."""

from __future__ import annotations

import httpx
import kubernetes
import pytest

from tests.integration.test_agent_runs import install_model


@pytest.fixture(scope="module")
def http(stack, api_key):
    with httpx.Client(base_url=stack.url, headers={"x-goog-api-key": api_key}, timeout=60) as c:
        yield c


def every_agent(client) -> list:
    found, token = [], None
    while True:
        page = client.agents.list(page_size=2, page_token=token)
        found.extend(page.agents or [])
        if not (token := page.next_page_token):
            return found


def test_the_platform_agents_are_listed_and_readable_by_id_or_alias(client):
    assert "eva" in [agent.id for agent in every_agent(client)]
    eva = client.agents.get("antigravity-preview-05-2026")
    assert eva.id == "eva"
    assert eva.agent_config.model
    assert eva.system_instruction.startswith("You are Eva")


def test_a_custom_agent_created_over_http_runs_and_kubectl_sees_it(client, stack, http):
    install_model(stack, "pirate-model", [{"text": "arr, done"}])
    created = client.agents.create(
        id="pirate",
        base_agent="eva",
        description="talks like a pirate",
        system_instruction="Talk like a pirate.",
        agent_config={"model": "pirate-model"},
    )
    assert (created.id, created.base_agent) == ("pirate", "eva")
    custom = kubernetes.client.CustomObjectsApi(stack.control_plane.api_client())
    resource = custom.get_namespaced_custom_object(
        "tether.dev", "v1alpha1", "tenant-a", "agents", "pirate"
    )
    assert resource["spec"]["systemInstruction"] == "Talk like a pirate."
    assert "pirate" in [agent.id for agent in every_agent(client)]

    run = client.interactions.create(agent="pirate", input="tidy up")
    assert run.status == "completed", run.errors
    assert run.output_text == "arr, done"

    again = http.post("/v1/agents", json=created.model_dump(exclude_none=True))
    assert again.status_code == 200, again.text  # a retried create answers with the agent
    other = http.post("/v1/agents", json={"id": "pirate", "base_agent": "eva"})
    assert other.status_code == 409
    assert other.json()["error"]["message"] == "agent 'pirate' already exists"

    assert client.agents.get("pirate").description == "talks like a pirate"
    client.agents.delete("pirate")
    gone = http.get("/v1beta/agents/pirate")
    assert gone.status_code == 404
    assert "pirate" in gone.json()["error"]["message"]


def test_a_new_agent_is_checked_whole_and_nothing_is_made_of_a_bad_one(http):
    response = http.post(
        "/v1/agents",
        json={
            "id": "broken",
            "base_agent": "no-such-agent",
            "tools": [{"type": "google_search"}, {"type": "function"}],
            "agent_config": {"model": "no-such-model"},
            "base_environment": {"env": {"TOKEN": {"secret_ref": {"name": "s", "key": "k"}}}},
        },
    )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "tools[0]: the built-in tool 'google_search' is not available to agents" in message
    assert "tools[1].name: a function tool needs a name" in message
    assert "base_agent: base agent" in message or "base_agent: agent 'no-such-agent'" in message
    assert "base_environment: " in message
    assert "agent_config.model: model 'no-such-model' not found" in message
    assert http.get("/v1/agents/broken").status_code == 404

    bad_id = http.post("/v1/agents", json={"id": "Not_An_Id", "base_agent": "eva"})
    assert bad_id.status_code == 400
    assert "agent id 'Not_An_Id'" in bad_id.json()["error"]["message"]
    aliased = http.post("/v1/agents", json={"id": "alias", "base_agent": "eva", "aliases": ["x"]})
    assert aliased.status_code == 400
    assert http.post("/v1/agents", json={"id": "eva"}).status_code == 409


def test_platform_agents_cannot_be_deleted_nor_an_agent_others_stand_on(http):
    refused = http.delete("/v1/agents/eva")
    assert refused.status_code == 403
    assert "platform agent" in refused.json()["error"]["message"]
    assert http.delete("/v1/agents/never-made").status_code == 404

    assert http.post("/v1/agents", json={"id": "base-one", "base_agent": "eva"}).status_code == 200
    assert (
        http.post("/v1/agents", json={"id": "on-top", "base_agent": "base-one"}).status_code == 200
    )
    in_use = http.delete("/v1/agents/base-one")
    assert in_use.status_code == 409
    assert "'on-top'" in in_use.json()["error"]["message"]
    assert http.delete("/v1/agents/on-top").status_code == 200
    assert http.delete("/v1/agents/base-one").status_code == 200


# Encoded, so that the client sends them as they are (it resolves a bare "." or ".." itself).
@pytest.mark.parametrize("trick", ["%2E%2E", "%2e", "keeper%2F..", "keeper%2F%2E", "a b"])
def test_a_path_trick_in_an_agent_id_reaches_nothing(http, trick):
    keeper = {"id": "keeper", "base_agent": "eva"}
    assert http.post("/v1/agents", json=keeper).status_code == 200  # again: the same agent
    before = http.get("/v1/interactions").json()
    assert http.delete(f"/v1/agents/{trick}").status_code in (400, 404)
    assert http.get(f"/v1/agents/{trick}").status_code in (400, 404)
    assert http.get("/v1/agents/keeper").status_code == 200  # "keeper/.." deleted no agent
    assert http.get("/v1/interactions").json() == before  # and the namespace is whole
