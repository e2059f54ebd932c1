"""Conversation state, rebuilt from Interaction resources: pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tether.api.interaction import CONTENT_TYPES
from tether.api.internal import MCP_SEPARATOR
from tether.mcp_tools import model_result

MODEL_STEP_TYPES = frozenset({"model_output", "thought", "function_call"})


def input_steps(value: Any) -> list[dict[str, Any]]:
    """Normalize any accepted `input` (string, content, list of contents or steps) to steps."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "user_input", "content": [{"type": "text", "text": value}]}]
    if isinstance(value, dict):
        return [{"type": "user_input", "content": [value]}]
    steps: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for item in value:
        if item.get("type") in CONTENT_TYPES:
            pending.append(item)
            continue
        if pending:
            steps.append({"type": "user_input", "content": pending})
            pending = []
        steps.append(item)
    if pending:
        steps.append({"type": "user_input", "content": pending})
    return steps


def history(chain: Iterable[tuple[Any, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """The timeline of a chain of interactions, oldest first: each one's input, then its output,
    as a model sees it."""
    steps: list[dict[str, Any]] = []
    for spec_input, output in chain:
        steps.extend(input_steps(spec_input))
        steps.extend(as_model_steps(output))
    return steps


def as_model_steps(steps: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Built-in tool use shows as code_execution_*, url_context_* and mcp_server_tool_* steps in
    the timeline; a model knows them as the function calls (run_code, fetch_url,
    <server>__<tool>) it made."""
    out = []
    for step in steps:
        match step.get("type"):
            case "code_execution_call":
                out.append(
                    {
                        "type": "function_call",
                        "id": step.get("id"),
                        "name": "run_code",
                        "arguments": step.get("arguments") or {},
                    }
                )
            case "url_context_call":
                urls = (step.get("arguments") or {}).get("urls") or [""]
                out.append(
                    {
                        "type": "function_call",
                        "id": step.get("id"),
                        "name": "fetch_url",
                        "arguments": {"url": urls[0]},
                    }
                )
            case "code_execution_result" | "url_context_result":
                out.append(
                    {
                        "type": "function_result",
                        "call_id": step.get("call_id"),
                        "result": step.get("result"),
                    }
                )
            case "mcp_server_tool_call":
                name = f"{step.get('server_name')}{MCP_SEPARATOR}{step.get('name')}"
                out.append(
                    {
                        "type": "function_call",
                        "id": step.get("id"),
                        "name": name,
                        "arguments": step.get("arguments") or {},
                    }
                )
            case "mcp_server_tool_result":
                out.append(
                    {
                        "type": "function_result",
                        "call_id": step.get("call_id"),
                        "name": f"{step.get('server_name')}{MCP_SEPARATOR}{step.get('name')}",
                        "result": model_result(step),
                    }
                )
            case "network_blocked":
                continue  # for people reading the timeline; the tool's own error told the model
            case _:
                out.append(step)
    return out


def text_of(step: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "") for part in step.get("content") or [] if part.get("type") == "text"
    )


def user_texts(steps: Iterable[dict[str, Any]]) -> list[str]:
    return [text_of(s) for s in steps if s.get("type") == "user_input"]


def model_turns(steps: Iterable[dict[str, Any]]) -> int:
    """How many times the model has answered so far (a run of model steps is one answer)."""
    turns, in_turn = 0, False
    for step in steps:
        is_model = step.get("type") in MODEL_STEP_TYPES
        if is_model and not in_turn:
            turns += 1
        in_turn = is_model
    return turns


def awaited_calls(steps: Iterable[dict[str, Any]]) -> list[str]:
    """The ids of the function calls in a timeline (wire format) that no function_result has
    answered yet: what a turn that ended `requires_action` waits for."""
    steps = list(steps)
    answered = {s.get("call_id") for s in steps if s.get("type") == "function_result"}
    return [
        s["id"]
        for s in steps
        if s.get("type") == "function_call" and s.get("id") and s["id"] not in answered
    ]


def function_results_problem(awaited: list[str], steps: Iterable[dict[str, Any]]) -> str | None:
    """Why input `steps` cannot follow a turn awaiting results for `awaited` call ids (empty when
    the previous turn awaits nothing), or None. Each function_result answers one call: one the
    previous turn made, or one made earlier in the same input."""
    steps = list(steps)
    open_calls = list(awaited)
    answered: list[str] = []
    for step in steps:
        kind = step.get("type")
        if kind == "function_call" and step.get("id"):
            open_calls.append(step["id"])
        elif kind == "function_result":
            call_id = step.get("call_id")
            if not call_id:
                return "a function_result needs the call_id of the function_call it answers"
            if call_id not in open_calls:
                expected = (
                    f"awaited: {', '.join(map(repr, open_calls))}"
                    if open_calls
                    else ("no function call awaits a result")
                )
                return f"function_result call_id {call_id!r} answers no function call ({expected})"
            if call_id in answered:
                return f"function_result call_id {call_id!r} is answered twice"
            answered.append(call_id)
    missing = [call_id for call_id in awaited if call_id not in answered]
    if missing:
        return (
            "the previous interaction ended requires_action and awaits a function_result for "
            f"call_id {', '.join(map(repr, missing))}; send one function_result per call"
        )
    return None


def call_names(steps: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The function name of each call id in a timeline (vendors that name the function a
    result answers need it)."""
    return {
        s["id"]: s.get("name") or ""
        for s in steps
        if s.get("type") == "function_call" and s.get("id")
    }
