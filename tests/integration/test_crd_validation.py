"""The generated CRDs, installed into a real kube-apiserver, accept and reject what they should.

These tests are about the API server alone, so they get a control plane of their own: no
operator there runs the interactions they create or rewrites the status they write.
"""

from __future__ import annotations

import json

import kubernetes
import pytest
from kubernetes.client import ApiException

from tether.dev.control_plane import ControlPlane
from tether.dev.stack import load_crds

GROUP, VERSION = "tether.dev", "v1alpha1"


@pytest.fixture(scope="module")
def api_client():
    with ControlPlane(crds=load_crds()) as control_plane:
        client = control_plane.api_client()
        yield client
        client.close()


@pytest.fixture
def custom(api_client):
    return kubernetes.client.CustomObjectsApi(api_client)


def interaction(name: str, **spec) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Interaction",
        "metadata": {"name": name},
        "spec": spec,
    }


def create(custom, namespace, body):
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "interactions", body)


def rejection(call) -> tuple[int, str]:
    with pytest.raises(ApiException) as caught:
        call()
    return caught.value.status, json.loads(caught.value.body)["message"]


def test_all_crds_are_established_and_served(kube_get):
    resources = kube_get(f"/apis/{GROUP}/{VERSION}")["resources"]
    served = {r["name"]: r for r in resources}
    assert {"interactions", "agents", "models", "environments"} <= served.keys()
    assert served["interactions"]["shortNames"] == ["ix"]
    assert served["interactions"]["namespaced"] is True
    assert "interactions/status" in served


def test_a_valid_interaction_is_accepted(custom, namespace):
    created = create(custom, namespace, interaction("hello", model="echo", input="hello"))
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "interactions", "hello")
    assert stored["spec"] == {"model": "echo", "input": "hello"}
    assert created["metadata"]["uid"] == stored["metadata"]["uid"]


def test_rich_input_and_tools_survive_pruning(custom, namespace):
    steps = [
        {"type": "user_input", "content": [{"type": "text", "text": "weather?"}]},
        {"type": "function_call", "id": "c1", "name": "weather", "arguments": {"city": "Oslo"}},
        {"type": "function_result", "callId": "c1", "result": {"temp_c": -3}},
    ]
    tool = {
        "type": "function",
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    create(custom, namespace, interaction("rich", model="echo", input=steps, tools=[tool]))
    spec = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "interactions", "rich")[
        "spec"
    ]
    assert spec["input"] == steps
    assert spec["tools"] == [tool]


def test_both_model_and_agent_is_rejected_naming_the_fields(custom, namespace):
    body = interaction("both", model="echo", agent="eva", input="hi")
    status, message = rejection(lambda: create(custom, namespace, body))
    assert status == 422
    assert "spec.model and spec.agent are mutually exclusive" in message


def test_neither_model_nor_agent_is_rejected_naming_the_fields(custom, namespace):
    status, message = rejection(lambda: create(custom, namespace, interaction("none", input="hi")))
    assert status == 422
    assert "one of spec.model or spec.agent is required" in message


def test_generation_config_with_an_agent_is_rejected(custom, namespace):
    body = interaction("gc", agent="eva", input="hi", generationConfig={"temperature": 0.2})
    status, message = rejection(lambda: create(custom, namespace, body))
    assert status == 422
    assert "spec.generationConfig applies only to model interactions" in message


def test_agent_config_with_a_model_is_rejected(custom, namespace):
    body = interaction("ac", model="echo", input="hi", agentConfig={"type": "dynamic"})
    status, message = rejection(lambda: create(custom, namespace, body))
    assert status == 422
    assert "spec.agentConfig applies only to agent interactions" in message


def test_an_unknown_phase_in_status_is_rejected(custom, namespace):
    create(custom, namespace, interaction("phase", model="echo", input="hi"))
    status, message = rejection(
        lambda: custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "interactions", "phase", {"status": {"phase": "exploded"}}
        )
    )
    assert status == 422
    assert "status.phase" in message
    assert "exploded" in message


def test_the_spec_cannot_change_after_creation(custom, namespace):
    create(custom, namespace, interaction("frozen", model="echo", input="hi"))
    status, message = rejection(
        lambda: custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "interactions", "frozen", {"spec": {"input": "changed"}}
        )
    )
    assert status == 422
    assert "spec is immutable after creation" in message
    spec = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "interactions", "frozen")[
        "spec"
    ]
    assert spec["input"] == "hi"


def test_status_and_metadata_can_still_change(custom, namespace):
    create(custom, namespace, interaction("live", model="echo", input="hi"))
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "interactions", "live", {"metadata": {"labels": {"team": "a"}}}
    )
    patched = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "interactions",
        "live",
        {"status": {"phase": "completed", "usage": {"totalTokens": 2}}},
    )
    assert patched["status"]["phase"] == "completed"
    assert patched["metadata"]["labels"] == {"team": "a"}


def test_printer_columns_tell_the_story_in_table_output(kube_get, custom, namespace):
    create(custom, namespace, interaction("table", model="echo", input="hi"))
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "interactions",
        "table",
        {"status": {"phase": "completed", "usage": {"totalTokens": 7}}},
    )
    table = kube_get(
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/interactions",
        accept="application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns == ["Name", "Model", "Agent", "Phase", "Tokens", "Age"]
    [row] = table["rows"]
    name, model, agent, phase, tokens, _age = row["cells"]
    assert (name, model, phase, tokens) == ("table", "echo", "completed", 7)
    assert agent is None


def test_a_model_route_without_what_its_provider_needs_is_rejected(custom, namespace):
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Model",
        "metadata": {"name": "local-llm"},
        "spec": {"provider": "openai-compatible"},
    }
    status, message = rejection(
        lambda: custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "models", body)
    )
    assert status == 422
    assert "spec.endpoint is required for provider openai-compatible" in message
    body["spec"]["endpoint"] = "http://127.0.0.1:8000/v1"
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "models", body)
    assert created["spec"]["endpoint"] == "http://127.0.0.1:8000/v1"
