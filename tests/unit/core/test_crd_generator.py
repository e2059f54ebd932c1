"""crds/ is generated from the pydantic models, and is a structural schema Kubernetes accepts."""

from __future__ import annotations

from tether import crds


def test_committed_crds_match_the_models(capsys):
    assert crds.main(["--check"]) == 0, capsys.readouterr().out


def _walk(node, path="$"):
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_every_schema_node_has_a_type_or_keeps_unknown_fields():
    for resource in crds.RESOURCES:
        schema = crds.build_crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            assert "$ref" not in node and "anyOf" not in node, f"{resource.kind} {path}"
            assert node.get("type") or node.get("x-kubernetes-preserve-unknown-fields"), (
                f"{resource.kind} {path} has neither a type nor preserve-unknown-fields"
            )


def test_custom_resource_fields_are_camel_case():
    spec = crds.structural_schema(crds.InteractionSpec)
    assert {"previousInteractionId", "generationConfig", "agentConfig", "webhookConfig"} <= set(
        spec["properties"]
    )
    assert "maxOutputTokens" in spec["properties"]["generationConfig"]["properties"]


def test_interaction_tells_its_story_in_kubectl_get():
    crd = crds.build_crd(crds.RESOURCES[0])
    assert crd["spec"]["names"]["shortNames"] == ["ix"]
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["Model", "Agent", "Phase", "Tokens", "Age"]


def test_exclusive_bounds_take_the_form_kubernetes_accepts():
    from pydantic import BaseModel, Field

    class Bounded(BaseModel):
        seconds: float = Field(gt=0, lt=10)

    schema = crds.structural_schema(Bounded)["properties"]["seconds"]
    assert schema["minimum"] == 0 and schema["exclusiveMinimum"] is True
    assert schema["maximum"] == 10 and schema["exclusiveMaximum"] is True
