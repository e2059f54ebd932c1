"""The Interaction: a create request (the spec) and what became of it (the status)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from tether.api import GROUP
from tether.api.base import FREE_FORM, ApiModel, OpenModel
from tether.api.common import ENVIRONMENT_ID, AgentConfig, Condition, SandboxEnvironment, Tool

CANCEL_ANNOTATION = f"{GROUP}/cancel-requested"
"""Set by POST …/cancel (the spec is immutable); the operator ends the run as cancelled."""
KIND_LABEL = f"{GROUP}/kind"
ACCEPTED_ANNOTATION = f"{GROUP}/accepted-at"
"""When the gateway accepted the create (sub-second; creationTimestamp has whole seconds)."""
REPORTED_ANNOTATION = f"{GROUP}/outcome-reported-at"
"""Set by the gateway when an agent run reports how it ended: the operator ends the run then,
without waiting for its pod to wind down."""

Phase = Literal[
    "queued",
    "in_progress",
    "requires_action",
    "completed",
    "failed",
    "cancelled",
    "incomplete",
    "budget_exceeded",
]
MAX_SPEC_BYTES = 1_000_000
"""An Interaction's spec (the request) is at most this large, so that it fits one etcd object
beside its bounded status."""
TERMINAL_PHASES: frozenset[str] = frozenset(
    {"requires_action", "completed", "failed", "cancelled", "incomplete", "budget_exceeded"}
)
"""Where a run ends. `requires_action` ends the run too: the client's answer is a new
interaction that continues the conversation."""

INTERACTION_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
"""The one pattern every interaction id is checked against wherever it enters (paths, bodies):
a Kubernetes object name without dots, so `.`, `..` and path tricks never reach the API."""


class InvalidInteractionId(ValueError):
    """An id that cannot name an interaction."""


def check_interaction_id(value: str, what: str = "interaction id") -> str:
    if not isinstance(value, str) or not INTERACTION_ID.match(value):
        raise InvalidInteractionId(
            f"{what} {value!r} is not an interaction id (lowercase letters, digits and dashes, "
            "at most 63, like 'ix-0123456789abcdef0123')"
        )
    return value


CONTENT_TYPES = frozenset({"text", "image", "audio", "document", "video"})
STEP_TYPES = frozenset(
    {
        "user_input",
        "model_output",
        "thought",
        "function_call",
        "function_result",
        "code_execution_call",
        "code_execution_result",
        "url_context_call",
        "url_context_result",
        "google_search_call",
        "google_search_result",
        "file_search_call",
        "file_search_result",
        "mcp_server_tool_call",
        "mcp_server_tool_result",
        "network_blocked",
    }
)
"""The SDK's step types, plus Tether's `network_blocked`: a connection the egress proxy refused
(the SDK reads an unknown type as a generic step)."""

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class Content(OpenModel):
    """One part of a turn: {"type": "text", "text": ...}, or an image, audio, document, video."""

    type: str
    text: str | None = None
    mime_type: str | None = None
    data: str | None = None
    uri: str | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in CONTENT_TYPES:
            raise ValueError(
                f"unknown content type {value!r}; expected one of {sorted(CONTENT_TYPES)}"
            )
        return value


class Step(OpenModel):
    """One entry of an interaction's timeline: user input, model output, a tool call or result."""

    type: str
    id: str | None = None
    content: list[Content] | None = None
    name: str | None = None
    arguments: dict[str, Any] | None = Field(default=None, json_schema_extra=FREE_FORM)
    call_id: str | None = None
    result: Any = Field(default=None, json_schema_extra=FREE_FORM)
    is_error: bool | None = None
    summary: list[Content] | None = None
    """A thought's reasoning, as far as the model shows it."""
    signature: str | None = None
    """A thought's opaque seal from its vendor, sent back to it with the conversation."""

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in STEP_TYPES:
            raise ValueError(f"unknown step type {value!r}; expected one of {sorted(STEP_TYPES)}")
        return value


class GenerationConfig(ApiModel):
    """Sampling and output settings for a model interaction."""

    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    stop_sequences: list[str] | None = None
    top_k: int | None = Field(default=None, ge=1)
    """Tether's extension: sample from the k likeliest tokens (Gemini, Anthropic)."""
    thinking_level: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None
    thinking_budget: int | None = Field(default=None, ge=0)
    """Tether's extension: the most tokens the model may think with (Gemini, Anthropic);
    exclusive with thinking_level."""
    thinking_summaries: Literal["auto", "none"] | None = None
    tool_choice: Any = Field(default=None, json_schema_extra=FREE_FORM)

    @model_validator(mode="after")
    def _one_thinking_knob(self) -> GenerationConfig:
        if self.thinking_level is not None and self.thinking_budget is not None:
            raise ValueError("set thinking_level or thinking_budget, not both")
        return self


WebhookUri = Annotated[str, Field(pattern=r"^https?://[^\s/?#]+(/\S*)?$", max_length=2048)]


class WebhookConfig(ApiModel):
    """Where to announce that this interaction ended, instead of the tenant's webhooks; and
    what to send back with it."""

    uris: list[WebhookUri] | None = Field(default=None, max_length=10)
    user_metadata: dict[str, Any] | None = Field(default=None, json_schema_extra=FREE_FORM)


def _input_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict | Content):
        return "content"
    if isinstance(value, list):
        return "list"
    return None


def _item_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    # a `type` that is an object or a list is unhashable: it goes to Step, which refuses it
    return "content" if isinstance(kind, str) and kind in CONTENT_TYPES else "step"


InputItem = Annotated[
    Annotated[Step, Tag("step")] | Annotated[Content, Tag("content")], Discriminator(_item_kind)
]
Input = Annotated[
    Annotated[str, Tag("text")]
    | Annotated[Content, Tag("content")]
    | Annotated[list[InputItem], Tag("list")],
    Discriminator(
        _input_kind,
        custom_error_type="invalid_input",
        custom_error_message=(
            "input must be a string, a content object, or a list of contents or steps"
        ),
    ),
]

_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^([a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?)?$")


class InteractionSpec(ApiModel):
    """What the client asked for. Immutable once created."""

    model: str | None = Field(default=None, min_length=1, max_length=253)
    """The model that answers (routed through a Model resource)."""
    agent: str | None = Field(default=None, min_length=1, max_length=253)
    """The agent that runs in a sandbox pod (an Agent resource or one of its aliases)."""
    input: Input = Field(json_schema_extra=FREE_FORM)
    """A string, a content object, a list of contents, or a list of steps."""
    previous_interaction_id: str | None = None
    system_instruction: str | None = None
    tools: list[Tool] | None = None
    generation_config: GenerationConfig | None = None
    agent_config: AgentConfig | None = None
    response_format: dict[str, Any] | list[dict[str, Any]] | None = Field(
        default=None, json_schema_extra=FREE_FORM
    )
    response_mime_type: str | None = None
    background: bool | None = None
    store: bool | None = None
    """Defaults to true; false deletes the interaction once it finishes."""
    environment: str | SandboxEnvironment | None = None
    """"remote", an Environment id, or an environment object."""
    webhook_config: WebhookConfig | None = None
    labels: dict[str, str] | None = Field(default=None, max_length=64)

    @field_validator("environment")
    @classmethod
    def _valid_environment(cls, value):
        named = value.environment_id if isinstance(value, SandboxEnvironment) else value
        if isinstance(named, str) and named != "remote" and not ENVIRONMENT_ID.match(named):
            raise ValueError(
                f'environment {named!r} is neither "remote" nor an environment id (at most '
                "63 lowercase letters, digits and dashes, starting with a letter)"
            )
        return value

    def environment_id(self) -> str | None:
        """The persistent Environment an agent run uses: `environment: "<id>"`, or an environment
        object's `environment_id`; None for a fresh workspace ("remote", or none)."""
        env = self.environment
        named = env.environment_id if isinstance(env, SandboxEnvironment) else env
        return None if named in (None, "remote") else named

    @field_validator("previous_interaction_id")
    @classmethod
    def _valid_previous(cls, value: str | None) -> str | None:
        return None if value is None else check_interaction_id(value, "the id")

    @field_validator("labels")
    @classmethod
    def _valid_labels(cls, labels: dict[str, str] | None) -> dict[str, str] | None:
        for key, value in (labels or {}).items():
            if not _LABEL_KEY.match(key):
                raise ValueError(
                    f"label key {key!r} must start with a lowercase letter and hold at most 63 "
                    "lowercase letters, digits, underscores and dashes"
                )
            if not _LABEL_VALUE.match(value):
                raise ValueError(
                    f"label value {value!r} (of {key!r}) must hold at most 63 lowercase letters, "
                    "digits, underscores and dashes, and start and end with a letter or digit"
                )
        return labels

    @model_validator(mode="after")
    def _one_target(self) -> InteractionSpec:
        if self.model is not None and self.agent is not None:
            raise ValueError("model and agent are mutually exclusive: set exactly one")
        if self.model is None and self.agent is None:
            raise ValueError("one of model or agent is required")
        if self.generation_config is not None and self.model is None:
            raise ValueError("generation_config applies only to model interactions")
        if self.agent_config is not None and self.agent is None:
            raise ValueError("agent_config applies only to agent interactions")
        return self


class CreateInteractionRequest(InteractionSpec):
    """The body of POST /v1/interactions: the spec plus how to answer."""

    stream: bool | None = None

    def spec(self) -> InteractionSpec:
        return InteractionSpec.model_validate(
            self.model_dump(exclude={"stream"}, exclude_none=True)
        )


class Usage(ApiModel):
    """Tokens counted over the whole interaction."""

    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_thought_tokens: int = 0
    total_tool_use_tokens: int = 0
    total_cached_tokens: int = 0
    total_tokens: int = 0


class Error(ApiModel):
    """Why an interaction did not complete."""

    code: str
    message: str


class InteractionStatus(ApiModel):
    """What happened: the API's status, the output timeline, usage and errors."""

    phase: Phase | None = None
    steps: list[Step] | None = Field(default=None, max_length=1000)
    """The output timeline (the input lives in the spec); bounded, deltas never land here."""
    usage: Usage | None = None
    errors: list[Error] | None = None
    created: Timestamp | None = None
    updated: Timestamp | None = None
    steps_ref: str | None = None
    """Set when the output steps were too large for the status: they are kept whole outside
    etcd under this reference, and `steps` is left empty."""
    environment_id: str | None = None
    answered_by: str | None = None
    """The Model that answered a model interaction: the one asked for, or a fallback of it."""
    sandbox_pod: str | None = None
    """The name of the sandbox pod of an agent run."""
    conditions: list[Condition] | None = None
    observed_generation: int | None = None


class InteractionObject(ApiModel):
    """The Interaction as clients read it: what was asked, and what became of it so far."""

    id: str
    status: Phase
    created: Timestamp | None = None
    updated: Timestamp | None = None
    model: str | None = None
    agent: str | None = None
    previous_interaction_id: str | None = None
    system_instruction: str | None = None
    tools: list[Tool] | None = None
    generation_config: GenerationConfig | None = None
    agent_config: AgentConfig | None = None
    response_format: Any = Field(default=None, json_schema_extra=FREE_FORM)
    response_mime_type: str | None = None
    webhook_config: WebhookConfig | None = None
    labels: dict[str, str] | None = None
    steps: list[Step] = Field(default_factory=list)
    usage: Usage | None = None
    errors: list[Error] | None = None
    environment_id: str | None = None
    answered_by: str | None = None
    """Tether's extension: the Model that answered (a fallback, when the one asked for
    failed)."""
