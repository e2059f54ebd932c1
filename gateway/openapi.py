"""The gateway's OpenAPI document, generated from the pydantic models it validates with."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from tether.api.interaction import CreateInteractionRequest, Error, InteractionObject


class ErrorBody(BaseModel):
    error: Error


class InteractionList(BaseModel):
    interactions: list[InteractionObject]
    next_page_token: str | None = None


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"description": description or "OK", "content": {"application/json": {"schema": schema}}}


@cache
def openapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [
            (CreateInteractionRequest, "validation"),
            (InteractionObject, "serialization"),
            (InteractionList, "serialization"),
            (ErrorBody, "serialization"),
        ],
        by_alias=False,
        ref_template="#/components/schemas/{model}",
    )
    errors = {
        code: _json(_ref("ErrorBody"), text)
        for code, text in {
            "400": "Invalid request",
            "401": "Missing or wrong API key",
            "404": "Not found (also another tenant's interaction)",
            "413": "Request body too large",
            "502": "The model provider failed",
        }.items()
    }
    interaction = _json(_ref("InteractionObject"), "The interaction")
    stream = {"text/event-stream": {"schema": {"type": "string"}}}
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    paths = {
        "/v1/interactions": {
            "post": {
                "summary": "Create an interaction (model call or agent run)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("CreateInteractionRequest")}},
                },
                "responses": {
                    "200": {**interaction, "content": {**interaction["content"], **stream}},
                    **errors,
                },
            },
            "get": {
                "summary": "List interactions (a Tether addition)",
                "parameters": [
                    {
                        "name": "page_size",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {"name": "page_token", "in": "query", "schema": {"type": "string"}},
                    {"name": "status", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "label",
                        "in": "query",
                        "schema": {"type": "array", "items": {"type": "string"}},
                        "description": "key:value, repeatable",
                    },
                ],
                "responses": {"200": _json(_ref("InteractionList")), **errors},
            },
        },
        "/v1/interactions/{id}": {
            "get": {
                "summary": "Get an interaction, or stream its events",
                "parameters": [
                    id_param,
                    {"name": "stream", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "last_event_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "include_input", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {
                    "200": {**interaction, "content": {**interaction["content"], **stream}},
                    **errors,
                },
            },
            "delete": {
                "summary": "Delete an interaction",
                "parameters": [id_param],
                "responses": {"200": _json({"type": "object"}), **errors},
            },
        },
        "/v1/interactions/{id}/cancel": {
            "post": {
                "summary": "Cancel a running interaction",
                "parameters": [id_param],
                "responses": {"200": interaction, **errors},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tether Interactions API", "version": "v1"},
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
