"""An Environment resource as the API shows it, and what the Environments API refuses before
anything reaches the cluster (these gateways have no connections at all)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from tests.unit.gateway.test_gates import API_KEY, _keys
from tether import api
from tether.api import API_VERSION
from tether.api.environment import CreateEnvironmentRequest
from tether.gateway.app import create_app
from tether.gateway.environments import create_problems, environment_view
from tether.gateway.state import State
from tether.sandbox_policy import SandboxPolicy
from tether.settings import Settings

POLICY = SandboxPolicy(image="tether/sandbox:1")
CREATED = "2026-11-26T10:00:00Z"


def resource(spec: dict | None = None, status: dict | None = None) -> dict:
    obj = {
        "apiVersion": API_VERSION,
        "kind": "Environment",
        "metadata": {"name": "env-0a1b2c", "namespace": "tenant-a", "creationTimestamp": CREATED},
        "spec": spec or {},
    }
    if status is not None:
        obj["status"] = status
    return obj


def problems(**fields) -> list[str]:
    return create_problems(CreateEnvironmentRequest.from_wire(fields), POLICY, "10Gi")


def test_a_new_environment_is_active_and_on_demand_updated_when_created():
    assert environment_view(resource()) == {
        "id": "env-0a1b2c",
        "mode": "on_demand",
        "status": "active",
        "created": CREATED,
        "updated": CREATED,
    }


def test_the_view_shows_the_spec_in_snake_case_and_what_runs_observed():
    spec = {
        "sources": [{"type": "inline", "target": "notes.md", "content": "hi"}],
        "network": {"allowlist": [{"domain": "pypi.org"}]},
        "systemInstruction": "Be brief.",
        "env": {"MODE": "fast"},
        "storage": "2Gi",
        "idleTimeoutSeconds": 3600,
    }
    status = {
        "phase": "active",
        "lastAccessed": "2026-11-26T11:00:00Z",
        "sizeBytes": 2048,
        "fileCount": 3,
        "activeInteraction": "run-1",
        "claimed": "2026-11-26T11:00:00Z",
    }
    view = environment_view(resource(spec, status))
    assert view["sources"] == [{"type": "inline", "target": "notes.md", "content": "hi"}]
    assert view["network"] == {"allowlist": [{"domain": "pypi.org"}]}
    assert (view["system_instruction"], view["env"], view["storage"]) == (
        "Be brief.",
        {"MODE": "fast"},
        "2Gi",
    )
    assert view["idle_timeout_seconds"] == 3600
    assert (view["updated"], view["last_accessed"]) == ("2026-11-26T11:00:00Z",) * 2
    assert (view["size_bytes"], view["file_count"], view["active_interaction"]) == (
        2048,
        3,
        "run-1",
    )
    assert "claimed" not in view and "phase" not in view


def test_an_expired_environment_says_so():
    view = environment_view(resource(status={"phase": "expired", "expired": CREATED}))
    assert (view["status"], view["mode"]) == ("expired", "on_demand")


def test_the_resource_holds_the_spec_in_camel_case():
    body = CreateEnvironmentRequest.from_wire(
        {"mode": "on_demand", "system_instruction": "Be brief.", "idle_timeout_seconds": 60}
    )
    made = api.resource("Environment", "tenant-a", "env-0a1b2c", body.spec().to_kube())
    assert (made["apiVersion"], made["kind"]) == (API_VERSION, "Environment")
    assert made["metadata"] == {"name": "env-0a1b2c", "namespace": "tenant-a"}
    assert made["spec"] == {"systemInstruction": "Be brief.", "idleTimeoutSeconds": 60}


def test_an_on_demand_environment_with_every_kind_of_source_passes():
    assert (
        problems(
            mode="on_demand",
            sources=[
                {"type": "inline", "target": "a.txt", "content": "a"},
                {"target": "b.txt", "content": "b"},  # no type is inline
                {"type": "skill", "source": "review", "content": "# Review"},
                {"type": "repository", "source": "https://github.com/tether-dev/tether"},
            ],
            network={"allowlist": [{"domain": "github.com"}]},
            env={"MODE": "fast"},
            storage="1Gi",
        )
        == []
    )


def test_self_hosted_environments_are_refused_naming_the_mode():
    (message,) = problems(mode="self_hosted", custom_config={"host": "x"})
    assert message.startswith("mode: self_hosted environments are not supported")
    assert "(mode on_demand)" in message


def test_a_custom_config_is_refused_outside_self_hosted():
    assert [p.split(":")[0] for p in problems(custom_config={"host": "x"})] == ["custom_config"]


def test_copying_an_environment_is_refused_for_now():
    (message,) = problems(from_environment="env-0a1b2c")
    assert message.startswith("from_environment: copying an environment is not supported yet")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"type": "gcs", "source": "gs://b/o"}, "sources[0].type: source type 'gcs' is not"),
        (
            {"type": "inline", "target": "a.txt"},
            "sources[0].content: a source of type inline needs",
        ),
        ({"type": "inline", "content": "a"}, "sources[0].target: an inline source needs"),
        ({"type": "skill", "source": "review"}, "sources[0].content: a source of type skill needs"),
        ({"type": "repository"}, "sources[0].source: a repository source needs its URL"),
        (
            {"type": "repository", "source": "http://github.com/x/y"},
            "sources[0].source: repository 'http://github.com/x/y' must be an https:// URL",
        ),
    ],
)
def test_a_source_nothing_could_write_is_refused_naming_it(source, expected):
    (message,) = problems(sources=[source])
    assert message.startswith(expected)


def test_every_problem_is_named_at_once():
    found = problems(
        mode="self_hosted",
        from_environment="env-0a1b2c",
        sources=[{"type": "skill_registry"}, {"type": "repository", "source": "git@x:y"}],
    )
    assert [p.split(":")[0] for p in found] == [
        "mode",
        "from_environment",
        "sources[0].type",
        "sources[1].source",
    ]


def test_a_secret_reference_in_env_is_a_validation_error_before_any_check():
    # The wire model takes plain strings only, so a secret_ref never reaches the policy.
    with pytest.raises(ValidationError):
        CreateEnvironmentRequest.from_wire({"env": {"KEY": {"secret_ref": {"name": "m"}}}})


@pytest.fixture
async def client():
    none = dict.fromkeys(
        ("kube", "events", "run_store", "outputs", "catalog", "providers", "slots")
    )
    state = State(settings=Settings(), keys=_keys(), **none)
    served = TestClient(TestServer(create_app(state=state), host="127.0.0.1"))
    await served.start_server()
    yield served
    await served.close()


async def _answer(response) -> tuple[int, dict]:
    return response.status, await response.json()


async def test_self_hosted_lists_nothing_and_another_mode_is_refused(client):
    key = {"x-goog-api-key": API_KEY}
    listed = await client.get("/v1/environments?mode=self_hosted", headers=key)
    assert await _answer(listed) == (200, {"environments": []})
    status, body = await _answer(await client.get("/v1/environments?mode=hosted", headers=key))
    assert status == 400
    assert body["error"]["message"] == "mode 'hosted' is not one of on_demand, self_hosted"


async def test_a_refused_create_names_every_field(client):
    response = await client.post(
        "/v1/environments",
        headers={"x-goog-api-key": API_KEY},
        json={"mode": "self_hosted", "sources": [{"type": "gcs"}], "storage": "lots"},
    )
    status, body = await _answer(response)
    assert (status, body["error"]["code"]) == (400, "invalid_argument")
    assert body["error"]["message"].startswith("storage: String should match pattern")
    response = await client.post(
        "/v1/environments",
        headers={"x-goog-api-key": API_KEY},
        json={"mode": "self_hosted", "sources": [{"type": "gcs"}]},
    )
    status, body = await _answer(response)
    assert status == 400
    assert [p.split(":")[0] for p in body["error"]["message"].split("; ")] == [
        "mode",
        "sources[0].type",
    ]


@pytest.mark.parametrize("path", ["%2e", "%2e%2e", "a%2Fb", "Env-1", "-env"])
async def test_an_id_that_is_no_environment_id_is_not_found_without_asking_the_cluster(
    client, path
):
    for method in ("GET", "DELETE"):
        response = await client.request(
            method, f"/v1/environments/{path}", headers={"x-goog-api-key": API_KEY}
        )
        status, body = await _answer(response)
        assert (status, body["error"]["code"]) == (404, "not_found"), (method, path)


def test_a_volume_past_the_platforms_maximum_is_refused_naming_storage():
    assert problems(storage="10Gi") == []
    assert problems(storage="11Gi") == ["storage: 11Gi is more than the platform's maximum of 10Gi"]
