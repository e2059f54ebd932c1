"""The sandbox ⇄ platform contract: what the operator hands a run (run.json), and what the agent
loop and the gateway's /internal/v1 API say to each other. One typed model per message, used on
both sides, so neither reads the other's dicts by string keys.

The sandbox imports this module and nothing else of the platform's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FILES_LIMIT = 10 * 1024 * 1024
"""The most a run's workspace archive may weigh (the upload, and what the agent packs)."""
SANDBOX_LABEL = "tether.dev/sandbox"
INTERACTION_LABEL = "tether.dev/interaction"
EGRESS_ANNOTATION = "tether.dev/egress"
"""A sandbox pod's allowlist (JSON), which the egress proxy enforces for the pod's address."""
EGRESS_CA_URL = "http://ca.egress.invalid/ca.pem"
"""Asked through the egress proxy, answered by it: the run's certificate authority (PEM)."""
EGRESS_BLOCKED_HEADER = "X-Tether-Egress-Blocked"
"""On the egress proxy's refusals (403), naming the host it refused: a tool tells the model
the proxy refused, rather than the site."""


MCP_SEPARATOR = "__"
"""Between an MCP server's name and its tool's in the function the model is offered."""
BROWSER_FUNCTIONS = ("browser_navigate", "browser_click", "browser_type", "browser_screenshot")
"""The browser tools an agent run has with a `computer_use` tool of environment "browser"."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceFile(_Message):
    """A file written, or a repository cloned, into /workspace before the loop starts."""

    path: str
    content: str = ""
    encoding: str = "utf-8"
    repository: str | None = None
    """An https:// git URL to clone at `path` instead of writing `content`."""
    if_absent: bool = False
    """Leave a file already there as it is (a persistent workspace's seeds)."""


class RunInput(_Message):
    """Everything the agent loop needs to know about its run (the Secret's run.json)."""

    system_instruction: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    max_steps: int
    files: list[SourceFile] = Field(default_factory=list)
    steps: list[dict[str, Any]] = Field(default_factory=list)
    """The conversation so far, in the wire spelling."""


class RunClaim(_Message):
    """What the operator hands an idle warm pod when a run claims it: the run, its token and
    its input, which an idle pod never holds."""

    interaction: str
    run: str
    """The Interaction's uid."""
    token: str
    input: RunInput


class GenerateRequest(_Message):
    """POST /internal/v1/generate: one model call for the run."""

    steps: list[dict[str, Any]] = Field(default_factory=list)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    system_instruction: str | None = None


class TokenUsage(_Message):
    input_tokens: int
    output_tokens: int
    thought_tokens: int = 0


class GenerateReply(_Message):
    """The model's whole answer, once its deltas went to the interaction's events."""

    steps: list[dict[str, Any]] = Field(default_factory=list)
    """The model's turn in the wire spelling: its thought and model_output steps, then the
    function calls it makes. All of it goes back into the conversation: vendors check their
    thoughts' signatures."""
    usage: TokenUsage
    budget_exceeded: bool

    def calls(self) -> list[dict[str, Any]]:
        return [step for step in self.steps if step["type"] == "function_call"]


class EgressRefusal(_Message):
    """What the egress proxy reports to the gateway when it refuses a run's connection: it
    becomes a `network_blocked` step of the run's timeline."""

    namespace: str
    interaction: str
    uid: str
    host: str
    port: int
    method: str
    """CONNECT for a tunnel, else the HTTP method."""
    reason: str

    def step(self) -> dict[str, Any]:
        return {
            "type": "network_blocked",
            "host": self.host,
            "port": self.port,
            "method": self.method,
            "reason": self.reason,
        }
