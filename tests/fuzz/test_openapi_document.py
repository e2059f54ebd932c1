"""The OpenAPI document describes every public route the gateway serves, and its SSE events."""

from __future__ import annotations

import re

import pytest
from aiohttp import web

from tether.gateway import idempotency
from tether.gateway.app import create_app
from tether.gateway.openapi import IDEMPOTENCY_KEY_PATTERN, UNDOCUMENTED, openapi_document
from tether.settings import Settings

pytestmark = pytest.mark.fuzz

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def served_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the application registers, `{path:.+}` read as `{path}`."""
    routes = set()
    for route in _routes(create_app(Settings())):
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.resource.canonical)
        if route.method in METHODS and not path.startswith(UNDOCUMENTED):
            routes.add((route.method, path))
    return routes


def _routes(app: web.Application):
    """Every route of the application and of the sub-applications mounted in it."""
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            yield from _routes(resource.get_info()["app"])
        else:
            yield from resource


def documented_routes() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in openapi_document()["paths"].items()
        for method in item
    }


def test_every_public_route_is_in_the_openapi_document_and_nothing_else():
    served = served_routes()
    assert ("DELETE", "/v1beta/interactions/{id}") in served  # the walk sees both prefixes
    assert ("GET", "/v1/interactions/{id}/files/{path}") in served
    assert documented_routes() == served


@pytest.mark.parametrize(("method", "path"), sorted(documented_routes()))
def test_every_id_in_a_path_is_described_with_the_interaction_id_pattern(method, path):
    operation = openapi_document()["paths"][path][method.lower()]
    params = {p["name"]: p for p in operation.get("parameters", [])}
    if "{id}" in path:
        assert params["id"]["schema"]["pattern"] == r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
    assert "400" in operation["responses"]
    assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


def test_streams_are_described_event_by_event():
    schemas = openapi_document()["components"]["schemas"]
    create = openapi_document()["paths"]["/v1/interactions"]["post"]
    stream = create["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert stream == {"$ref": "#/components/schemas/InteractionEvent"}
    event = schemas["InteractionEvent"]
    assert event["discriminator"]["propertyName"] == "event_type"
    assert set(event["discriminator"]["mapping"]) == {
        "interaction.created",
        "interaction.status_update",
        "step.start",
        "step.delta",
        "step.stop",
        "interaction.completed",
        "error",
    }
    for ref in event["oneOf"]:
        name = ref["$ref"].rsplit("/", 1)[1]
        assert {"event_type", "event_id"} <= set(schemas[name]["required"]), name


def test_the_list_and_resume_parameters_are_bounded():
    paths = openapi_document()["paths"]
    listing = {p["name"]: p["schema"] for p in paths["/v1beta/interactions"]["get"]["parameters"]}
    assert (listing["page_size"]["minimum"], listing["page_size"]["maximum"]) == (1, 1000)
    assert "completed" in listing["status"]["enum"]
    get = {p["name"]: p["schema"] for p in paths["/v1/interactions/{id}"]["get"]["parameters"]}
    assert get["last_event_id"]["pattern"] == r"^\d{1,20}-\d{1,20}$"
    create = paths["/v1/interactions"]["post"]["parameters"]
    assert [p["name"] for p in create if p["in"] == "header"] == ["Idempotency-Key"]


def test_the_documented_idempotency_key_is_the_one_the_gateway_checks():
    assert idempotency._KEY.pattern == IDEMPOTENCY_KEY_PATTERN
