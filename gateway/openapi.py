"""The gateway's OpenAPI document, generated from the pydantic models it validates with.

Every public route is described under both prefixes the gateway serves (`/v1`, `/v1beta`); a
unit test walks the application's router so that the two cannot drift. The server-sent events
are described one model per event type, told apart by `event_type`.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, RootModel, Tag
from pydantic.json_schema import models_json_schema

from tether.api.agent import AgentList, AgentObject
from tether.api.base import ApiModel
from tether.api.credential import (
    CreateCredentialRequest,
    CredentialList,
    CredentialObject,
    UpdateCredentialRequest,
)
from tether.api.environment import CreateEnvironmentRequest, EnvironmentList, EnvironmentObject
from tether.api.interaction import (
    INTERACTION_ID,
    Content,
    CreateInteractionRequest,
    Error,
    InteractionObject,
    Phase,
    Step,
)
from tether.api.trigger import (
    TRIGGER_ID,
    CreateTriggerRequest,
    TriggerExecutionList,
    TriggerExecutionObject,
    TriggerList,
    TriggerObject,
    UpdateTriggerRequest,
)
from tether.api.webhook import (
    WEBHOOK_ID,
    CreateWebhookRequest,
    DeliveryList,
    RotateSigningSecretRequest,
    UpdateWebhookRequest,
    WebhookList,
    WebhookObject,
)

PREFIXES = ("/v1", "/v1beta")
EVENT_ID_PATTERN = r"^\d{1,20}-\d{1,20}$"
"""A Redis stream entry id, as every event's `event_id` and `last_event_id` are."""
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
"""1 to 255 printable ASCII characters without spaces (gateway/idempotency.py checks it)."""
UNDOCUMENTED = ("/internal/", "/healthz", "/metrics", "/openapi.json")
"""Routes that are not the public API: the sandboxes' run-token API and the operational
endpoints (the README lists them)."""


class ErrorBody(BaseModel):
    error: Error


class InteractionList(BaseModel):
    interactions: list[InteractionObject]
    next_page_token: str | None = None


class FileEntry(BaseModel):
    path: str
    bytes: int


class FileList(BaseModel):
    files: list[FileEntry]


EventId = Annotated[str, Field(pattern=EVENT_ID_PATTERN)]


class InteractionCreatedEvent(ApiModel):
    """The run has started: the interaction as it was then."""

    event_type: Literal["interaction.created"]
    event_id: EventId
    interaction: InteractionObject


class StatusUpdateEvent(ApiModel):
    """The interaction's status changed."""

    event_type: Literal["interaction.status_update"]
    event_id: EventId
    interaction_id: str
    status: Phase


class StepStartEvent(ApiModel):
    """A step of the timeline begins (a model output, a tool call or its result)."""

    event_type: Literal["step.start"]
    event_id: EventId
    index: int
    step: Step


class ThoughtSummaryDelta(ApiModel):
    """More of a thought's summary."""

    type: Literal["thought_summary"]
    content: Content


class ThoughtSignatureDelta(ApiModel):
    """A thought's signature, whole."""

    type: Literal["thought_signature"]
    signature: str


def _delta_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("thought_summary", "thought_signature") else "content"


StepDelta = Annotated[
    Annotated[Content, Tag("content")]
    | Annotated[ThoughtSummaryDelta, Tag("thought_summary")]
    | Annotated[ThoughtSignatureDelta, Tag("thought_signature")],
    Discriminator(_delta_kind),
]


class StepDeltaEvent(ApiModel):
    """More of the step at `index`: a chunk of model output, or of a thought."""

    event_type: Literal["step.delta"]
    event_id: EventId
    index: int
    delta: StepDelta


class StepStopEvent(ApiModel):
    """The step at `index` is whole."""

    event_type: Literal["step.stop"]
    event_id: EventId
    index: int


class InteractionCompletedEvent(ApiModel):
    """The last event: the final interaction (output steps only)."""

    event_type: Literal["interaction.completed"]
    event_id: EventId
    interaction: InteractionObject


class ErrorEvent(ApiModel):
    """Why the run failed, or that the interaction was deleted while it was followed."""

    event_type: Literal["error"]
    event_id: EventId
    error: Error


class InteractionEvent(
    RootModel[
        Annotated[
            InteractionCreatedEvent
            | StatusUpdateEvent
            | StepStartEvent
            | StepDeltaEvent
            | StepStopEvent
            | InteractionCompletedEvent
            | ErrorEvent,
            Field(discriminator="event_type"),
        ]
    ]
):
    """One server-sent event's `data`; its SSE `event` field is the `event_type`, its `id` the
    `event_id`."""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_UPDATE_MASK = {
    "name": "update_mask",
    "in": "query",
    "description": "Comma-separated fields to change; those given otherwise",
    "schema": {"type": "string"},
}


def _deleted(summary: str, parameters: list[dict[str, Any]], *errors: str) -> dict[str, Any]:
    """A DELETE that answers an empty object."""
    return {
        "summary": summary,
        "parameters": parameters,
        "responses": {
            "200": _json({"type": "object", "maxProperties": 0}, "Deleted"),
            **_errors(*_COMMON_ERRORS, *errors),
        },
    }


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": "Invalid request: the message names what is wrong",
    "401": "Missing or wrong API key",
    "403": "Not the tenant's to change (a platform agent)",
    "404": "Not found (also another tenant's interaction)",
    "405": "Method not allowed on this path",
    "409": "Taken, or still in use: the message says by what",
    "410": "The run's output steps are no longer kept",
    "413": "Request body too large, or too large to keep",
    "415": "Request body in an encoding or charset the gateway does not read",
    "422": "This Idempotency-Key was used for a different request",
    "502": "The webhook's endpoint did not take the ping: the message says what it answered",
    "503": "The cluster is not answering; try again",
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json(_ref("ErrorBody"), _ERRORS[code]) for code in codes}


_COMMON_ERRORS = ("400", "401", "404", "405", "503")


PAGING = (
    {
        "name": "page_size",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
    },
    {"name": "page_token", "in": "query", "schema": {"type": "string"}},
)
"""The query parameters of every list."""


def _id_param() -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "An interaction id, as returned by create",
        "schema": {"type": "string", "pattern": INTERACTION_ID.pattern, "maxLength": 63},
    }


_ENVIRONMENT_PARAM = {
    "name": "environment",
    "in": "path",
    "required": True,
    "description": "An environment's id, as returned by create",
    "schema": {"type": "string", "minLength": 1},
}
_CREDENTIAL_PARAM = {
    "name": "credential",
    "in": "path",
    "required": True,
    "description": "A credential's id, as given at create",
    "schema": {"type": "string", "minLength": 1},
}
_WEBHOOK_PARAM = {
    "name": "webhook",
    "in": "path",
    "required": True,
    "description": "A webhook's id, as create answered it",
    "schema": {"type": "string", "pattern": WEBHOOK_ID.pattern},
}
_TRIGGER_PARAM = {
    "name": "trigger",
    "in": "path",
    "required": True,
    "description": "A trigger's id, as create answered it",
    "schema": {"type": "string", "pattern": TRIGGER_ID},
}
_FILE_PATH = {
    "name": "path",
    "in": "path",
    "required": True,
    "description": "A path in the environment's workspace, relative to it",
    "schema": {"type": "string"},
}
_FILE_ENTRY = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "path": {"type": "string"},
        "type": {"type": "string", "enum": ["file", "directory"]},
        "size_bytes": {"type": "integer"},
        "mime_type": {"type": "string"},
        "created": {"type": "string", "format": "date-time"},
        "modified": {"type": "string", "format": "date-time"},
    },
}
_FILE_LIST = {
    "type": "object",
    "properties": {
        "files": {"type": "array", "items": _FILE_ENTRY},
        "next_page_token": {"type": "string"},
    },
}


def _list_files(parameters: list[dict[str, Any]], download: bool = False) -> dict[str, Any]:
    """GET on an environment's files: a listing (a directory's entries, or a file's own), or
    with alt=media a file's bytes."""
    query = [
        *PAGING,
        {"name": "recursive", "in": "query", "schema": {"type": "boolean", "default": False}},
    ]
    if download:
        query.append(
            {"name": "alt", "in": "query", "schema": {"type": "string", "enum": ["media"]}}
        )
    ok = _json(_FILE_LIST, "The entries")
    if download:
        ok["content"]["*/*"] = {"schema": {"type": "string", "format": "binary"}}
        ok["description"] = "The entries; with alt=media, the file's bytes"
    return {
        "summary": "List an environment's files, or download one (alt=media)",
        "parameters": [*parameters, *query],
        "responses": {"200": ok, **_errors(*_COMMON_ERRORS, "409")},
    }


def _uploads() -> dict[str, dict[str, Any]]:
    """The resumable upload of environments.files.upload: start (PUT), then chunks (POST)."""
    header = lambda name, schema: {"name": name, "in": "header", "schema": schema}  # noqa: E731
    environment_param = _ENVIRONMENT_PARAM
    return {
        "/environments/{environment}/files/{path}": {
            "put": {
                "summary": "Start an upload into an environment (X-Goog-Upload-Command: start)",
                "parameters": [
                    environment_param,
                    _FILE_PATH,
                    {"name": "overwrite", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "extract", "in": "query", "schema": {"type": "boolean"}},
                    header("X-Goog-Upload-Command", {"type": "string", "enum": ["start"]}),
                    header("X-Goog-Upload-Protocol", {"type": "string", "enum": ["resumable"]}),
                    header("X-Goog-Upload-Header-Content-Length", {"type": "integer"}),
                    header("X-Goog-Upload-Header-Content-Type", {"type": "string"}),
                ],
                "responses": {
                    "200": _json({"type": "object"}, "Started: X-Goog-Upload-URL says where to"),
                    **_errors(*_COMMON_ERRORS, "409", "413"),
                },
            },
            "post": {
                "summary": "A chunk of a started upload; the last one finalizes it",
                "parameters": [
                    environment_param,
                    _FILE_PATH,
                    {"name": "upload_id", "in": "query", "schema": {"type": "string"}},
                    header("X-Goog-Upload-Command", {"type": "string"}),
                    header("X-Goog-Upload-Offset", {"type": "integer"}),
                ],
                "requestBody": {
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    }
                },
                "responses": {
                    "200": _json(_FILE_LIST, "Received (or, finalized, the files written)"),
                    **_errors(*_COMMON_ERRORS, "409", "413"),
                },
            },
        }
    }


def _operations() -> dict[str, dict[str, Any]]:
    """The public paths, relative to a version prefix."""
    interaction = _json(_ref("InteractionObject"), "The interaction")
    interaction_or_stream = {
        "description": "The interaction, or its events when streamed",
        "content": {
            **interaction["content"],
            "text/event-stream": {"schema": _ref("InteractionEvent")},
        },
    }
    id_param = _id_param()
    agent_param = {
        "name": "agent",
        "in": "path",
        "required": True,
        "description": "An agent's id, or a platform agent's alias",
        "schema": {"type": "string", "minLength": 1},
    }
    environment_param = _ENVIRONMENT_PARAM
    credential_param = _CREDENTIAL_PARAM
    return {
        "/interactions": {
            "post": {
                "summary": "Create an interaction (model call or agent run)",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "Tether addition: a retried create with the same key "
                        "(and API key's tenant) returns the same interaction for 24 h",
                        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("CreateInteractionRequest"),
                            "example": {"model": "echo", "input": "hello"},
                        }
                    },
                },
                "responses": {
                    "200": interaction_or_stream,
                    **_errors(*_COMMON_ERRORS, "410", "413", "415", "422"),
                },
            },
            "get": {
                "summary": "List interactions (a Tether addition)",
                "parameters": [
                    *PAGING,
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(Phase.__args__)},
                    },
                    {
                        "name": "label",
                        "in": "query",
                        "description": "key:value, repeatable",
                        "schema": {
                            "type": "array",
                            "items": {"type": "string", "pattern": "^[^:]+:"},
                        },
                    },
                ],
                "responses": {"200": _json(_ref("InteractionList")), **_errors(*_COMMON_ERRORS)},
            },
        },
        "/interactions/{id}": {
            "get": {
                "summary": "Get an interaction, or stream its events (resumable)",
                "parameters": [
                    id_param,
                    {"name": "stream", "in": "query", "schema": {"type": "boolean"}},
                    {
                        "name": "last_event_id",
                        "in": "query",
                        "description": "Resume after this event (at most 64-bit parts)",
                        "schema": {"type": "string", "pattern": EVENT_ID_PATTERN},
                    },
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "description": "The SSE way to resume; last_event_id wins",
                        "schema": {"type": "string", "pattern": EVENT_ID_PATTERN},
                    },
                    {"name": "include_input", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {"200": interaction_or_stream, **_errors(*_COMMON_ERRORS, "410")},
            },
            "delete": _deleted("Delete an interaction and its event log", [id_param]),
        },
        "/interactions/{id}/cancel": {
            "post": {
                "summary": "Cancel a running interaction (idempotent)",
                "parameters": [id_param],
                "responses": {"200": interaction, **_errors(*_COMMON_ERRORS, "410")},
            }
        },
        "/interactions/{id}/files": {
            "get": {
                "summary": "List the files an agent run left in its workspace",
                "parameters": [id_param],
                "responses": {"200": _json(_ref("FileList")), **_errors(*_COMMON_ERRORS)},
            }
        },
        "/interactions/{id}/files/{path}": {
            "get": {
                "summary": "Download one workspace file",
                "parameters": [
                    id_param,
                    {
                        "name": "path",
                        "in": "path",
                        "required": True,
                        "description": "The file's path in the workspace, as listed",
                        "schema": {"type": "string", "minLength": 1},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The file's bytes, typed by its name",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **_errors(*_COMMON_ERRORS),
                },
            }
        },
        "/agents": {
            "get": {
                "summary": "List agents: the tenant's own, then the platform's",
                "parameters": [
                    *PAGING,
                ],
                "responses": {"200": _json(_ref("AgentList")), **_errors(*_COMMON_ERRORS)},
            },
            "post": {
                "summary": "Create an agent in the tenant's namespace",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("AgentObject"),
                            "example": {"id": "helper", "base_agent": "eva"},
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("AgentObject"), "The agent"),
                    **_errors(*_COMMON_ERRORS, "409", "413", "415"),
                },
            },
        },
        "/agents/{agent}": {
            "get": {
                "summary": "Get an agent (the tenant's, or the platform's by id or alias)",
                "parameters": [agent_param],
                "responses": {
                    "200": _json(_ref("AgentObject"), "The agent"),
                    **_errors(*_COMMON_ERRORS),
                },
            },
            "delete": _deleted("Delete one of the tenant's agents", [agent_param], "403", "409"),
        },
        "/environments": {
            "get": {
                "summary": "List the tenant's environments",
                "parameters": [
                    *PAGING,
                    {
                        "name": "mode",
                        "in": "query",
                        "description": "self_hosted lists none: Tether runs every environment "
                        "on the cluster",
                        "schema": {
                            "type": "string",
                            "enum": ["on_demand", "self_hosted"],
                            "default": "on_demand",
                        },
                    },
                ],
                "responses": {"200": _json(_ref("EnvironmentList")), **_errors(*_COMMON_ERRORS)},
            },
            "post": {
                "summary": "Create a persistent workspace in the tenant's namespace",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("CreateEnvironmentRequest"),
                            "example": {
                                "sources": [
                                    {"type": "inline", "target": "notes.md", "content": "hi"}
                                ]
                            },
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("EnvironmentObject"), "The environment"),
                    **_errors(*_COMMON_ERRORS, "413", "415"),
                },
            },
        },
        "/environments/{environment}": {
            "get": {
                "summary": "Get one of the tenant's environments",
                "parameters": [environment_param],
                "responses": {
                    "200": _json(_ref("EnvironmentObject"), "The environment"),
                    **_errors(*_COMMON_ERRORS),
                },
            },
            "delete": _deleted(
                "Delete an environment and its files, unless a run is using it",
                [environment_param],
                "409",
            ),
        },
        "/credentials": {
            "get": {
                "summary": "List the tenant's credentials (never their secret values)",
                "parameters": PAGING,
                "responses": {"200": _json(_ref("CredentialList")), **_errors(*_COMMON_ERRORS)},
            },
            "post": {
                "summary": "Store a credential, sealed by the egress proxy, for runs' requests",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("CreateCredentialRequest"),
                            "example": {"id": "GITHUB_TOKEN", "type": "bearer_token", "token": "…"},
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("CredentialObject"), "The credential"),
                    **_errors(*_COMMON_ERRORS, "409", "413", "415", "503"),
                },
            },
        },
        "/credentials/{credential}": {
            "get": {
                "summary": "Get one of the tenant's credentials (never its secret values)",
                "parameters": [credential_param],
                "responses": {
                    "200": _json(_ref("CredentialObject"), "The credential"),
                    **_errors(*_COMMON_ERRORS),
                },
            },
            "patch": {
                "summary": "Change a credential; its type stays",
                "parameters": [
                    credential_param,
                    _UPDATE_MASK,
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("UpdateCredentialRequest")}},
                },
                "responses": {
                    "200": _json(_ref("CredentialObject"), "The credential"),
                    **_errors(*_COMMON_ERRORS, "413", "415", "503"),
                },
            },
            "delete": _deleted("Delete a credential", [credential_param]),
        },
        **_webhook_operations(),
        **_trigger_operations(),
        "/environments/{environment}/files": {"get": _list_files([environment_param])},
        "/environments/{environment}/files/{path}": {
            "get": _list_files([environment_param, _FILE_PATH], download=True)
        },
        "/interactions/{id}/logs": {
            "get": {
                "summary": "The log of a running agent run's sandbox container",
                "parameters": [
                    id_param,
                    {
                        "name": "container",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["agent", "workspace"],
                            "default": "agent",
                        },
                    },
                    {
                        "name": "tail_lines",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 100_000,
                            "default": 200,
                        },
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The log's last lines",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(*_COMMON_ERRORS),
                },
            }
        },
    }


def _webhook_operations() -> dict[str, Any]:
    one = [_WEBHOOK_PARAM]
    webhook = _json(_ref("WebhookObject"), "The webhook")
    optional_body = {"required": False, "content": {"application/json": {"schema": {}}}}
    return {
        "/webhooks": {
            "get": {
                "summary": "List the tenant's webhooks (their secrets truncated)",
                "parameters": PAGING,
                "responses": {"200": _json(_ref("WebhookList")), **_errors(*_COMMON_ERRORS)},
            },
            "post": {
                "summary": "Register an endpoint; the answer holds its signing secret, once",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("CreateWebhookRequest"),
                            "example": {
                                "uri": "https://example.com/hook",
                                "subscribed_events": ["interaction.completed"],
                            },
                        }
                    },
                },
                "responses": {"200": webhook, **_errors(*_COMMON_ERRORS, "413", "415")},
            },
        },
        "/webhooks/{webhook}": {
            "get": {
                "summary": "Get one of the tenant's webhooks",
                "parameters": one,
                "responses": {"200": webhook, **_errors(*_COMMON_ERRORS)},
            },
            "patch": {
                "summary": "Change a webhook; enabling it clears a disable for failed deliveries",
                "parameters": [
                    _WEBHOOK_PARAM,
                    _UPDATE_MASK,
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("UpdateWebhookRequest")}},
                },
                "responses": {"200": webhook, **_errors(*_COMMON_ERRORS, "413", "415")},
            },
            "delete": _deleted("Delete a webhook and its secrets", one),
        },
        "/webhooks/{webhook}:rotateSigningSecret": {
            "post": {
                "summary": "A new signing secret; the old ones sign beside it for 24 h or stop now",
                "parameters": one,
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("RotateSigningSecretRequest")}},
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"secret": {"type": "string"}},
                            "required": ["secret"],
                        },
                        "The new secret, shown this once",
                    ),
                    **_errors(*_COMMON_ERRORS, "413", "415"),
                },
            }
        },
        "/webhooks/{webhook}:ping": {
            "post": {
                "summary": "Send the endpoint a signed webhook.ping now",
                "parameters": one,
                "requestBody": optional_body,
                "responses": {
                    "200": _json({"type": "object", "maxProperties": 0}, "Delivered"),
                    **_errors(*_COMMON_ERRORS, "413", "415", "502"),
                },
            }
        },
        "/webhooks/{webhook}/deliveries": {
            "get": {
                "summary": "The endpoint's delivery log: recent attempts, newest first",
                "parameters": one,
                "responses": {"200": _json(_ref("DeliveryList")), **_errors(*_COMMON_ERRORS)},
            }
        },
    }


def _trigger_operations() -> dict[str, Any]:
    one = [_TRIGGER_PARAM]
    by_id = [{**_TRIGGER_PARAM, "name": "trigger_id"}]
    trigger = _json(_ref("TriggerObject"), "The trigger")
    return {
        "/triggers": {
            "get": {
                "summary": "List the tenant's triggers",
                "parameters": PAGING,
                "responses": {"200": _json(_ref("TriggerList")), **_errors(*_COMMON_ERRORS)},
            },
            "post": {
                "summary": "Run an agent on a cron schedule",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("CreateTriggerRequest"),
                            "example": {
                                "interaction": {"agent": "eva", "input": "the daily report"},
                                "schedule": "0 9 * * 1-5",
                                "time_zone": "Europe/Paris",
                            },
                        }
                    },
                },
                "responses": {"200": trigger, **_errors(*_COMMON_ERRORS, "413", "415")},
            },
        },
        "/triggers/{trigger}": {
            "get": {
                "summary": "Get one of the tenant's triggers",
                "parameters": one,
                "responses": {"200": trigger, **_errors(*_COMMON_ERRORS)},
            },
            "patch": {
                "summary": "Rename, pause or resume a trigger",
                "parameters": one,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("UpdateTriggerRequest")}},
                },
                "responses": {"200": trigger, **_errors(*_COMMON_ERRORS, "413", "415")},
            },
            "delete": _deleted("Delete a trigger (the interactions it ran stay)", one),
        },
        "/triggers/{trigger_id}/executions": {
            "get": {
                "summary": "The trigger's executions, newest first",
                "parameters": [*by_id, *PAGING],
                "responses": {
                    "200": _json(_ref("TriggerExecutionList")),
                    **_errors(*_COMMON_ERRORS),
                },
            },
            "post": {
                "summary": "Run the trigger now",
                "parameters": by_id,
                "responses": {
                    "200": _json(_ref("TriggerExecutionObject"), "The execution"),
                    **_errors(*_COMMON_ERRORS, "409"),
                },
            },
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [
            (CreateInteractionRequest, "validation"),
            (InteractionObject, "serialization"),
            (InteractionList, "serialization"),
            (AgentObject, "validation"),
            (AgentList, "serialization"),
            (CreateEnvironmentRequest, "validation"),
            (EnvironmentObject, "serialization"),
            (EnvironmentList, "serialization"),
            (FileList, "serialization"),
            (CreateCredentialRequest, "validation"),
            (UpdateCredentialRequest, "validation"),
            (CredentialObject, "serialization"),
            (CredentialList, "serialization"),
            (CreateWebhookRequest, "validation"),
            (UpdateWebhookRequest, "validation"),
            (RotateSigningSecretRequest, "validation"),
            (WebhookObject, "serialization"),
            (WebhookList, "serialization"),
            (DeliveryList, "serialization"),
            (CreateTriggerRequest, "validation"),
            (UpdateTriggerRequest, "validation"),
            (TriggerObject, "serialization"),
            (TriggerList, "serialization"),
            (TriggerExecutionObject, "serialization"),
            (TriggerExecutionList, "serialization"),
            (InteractionEvent, "serialization"),
            (ErrorBody, "serialization"),
        ],
        by_alias=False,
        ref_template="#/components/schemas/{model}",
    )
    operations = _operations()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tether Interactions API",
            "version": "v1",
            "description": "Served under /v1 and, for older clients, /v1beta.",
        },
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}, {"bearer": []}],
        "paths": {
            **{prefix + path: item for prefix in PREFIXES for path, item in operations.items()},
            **{
                f"/upload{prefix}{path}": item
                for prefix in PREFIXES
                for path, item in _uploads().items()
            },
        },
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
