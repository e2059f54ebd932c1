"""Triggers: an agent run on a cron schedule. A Trigger resource holds the create body and the
schedule (what `kubectl get triggers` shows); each execution is an Interaction labelled with
its trigger, named by the time it was scheduled for, so one scheduled time is one run whoever
fires it and however often.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zoneinfo
from typing import Any, Literal

from croniter import croniter
from pydantic import Field, field_validator

from tether.api import GROUP, UPDATED_ANNOTATION
from tether.api.base import FREE_FORM, ApiModel
from tether.api.interaction import TERMINAL_PHASES, CreateInteractionRequest, Timestamp

TRIGGER_LABEL = f"{GROUP}/trigger"
SCHEDULED_ANNOTATION = f"{GROUP}/scheduled-for"
TIMED_OUT_ANNOTATION = f"{GROUP}/timed-out"
TRIGGER_ID = r"^tr-[0-9a-f]{12}$"
FAILED_PHASES = frozenset({"failed", "cancelled", "incomplete", "budget_exceeded"})


def _schedule(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(
            f"{value!r} is not a cron schedule (five fields: minute hour day month weekday, "
            "and an optional sixth for seconds)"
        )
    return value


def _time_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"{value!r} is not an IANA time zone (like Europe/Paris)") from error
    return value


class TriggerSpec(ApiModel):
    interaction: dict[str, Any] = Field(json_schema_extra=FREE_FORM)
    """The agent interaction's create body, as the API takes it."""
    schedule: str
    time_zone: str
    display_name: str | None = None
    environment_id: str | None = None
    execution_timeout_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    max_consecutive_failures: int | None = Field(default=None, ge=1, le=1000)
    status: Literal["active", "paused"] = "active"

    _schedule = field_validator("schedule")(_schedule)
    _zone = field_validator("time_zone")(_time_zone)


class TriggerStatus(ApiModel):
    last_scheduled: Timestamp | None = None
    """The scheduled time last fired: the next is the first after it."""
    last_run_time: Timestamp | None = None
    previous_interaction_id: str | None = None
    errored: Timestamp | None = None
    """When it paused itself after max_consecutive_failures failed executions in a row."""
    last_pause_time: Timestamp | None = None
    last_resume_time: Timestamp | None = None


class CreateTriggerRequest(ApiModel):
    """POST /triggers: the SDK's TriggerCreateParams."""

    interaction: CreateInteractionRequest
    schedule: str
    time_zone: str
    display_name: str | None = Field(default=None, max_length=256)
    environment_id: str | None = None
    execution_timeout_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    max_consecutive_failures: int | None = Field(default=None, ge=1, le=1000)

    _schedule = field_validator("schedule")(_schedule)
    _zone = field_validator("time_zone")(_time_zone)


class UpdateTriggerRequest(ApiModel):
    """PATCH /triggers/{id}: the SDK's TriggerUpdate."""

    display_name: str | None = Field(default=None, max_length=256)
    status: Literal["active", "paused", "error"] | None = None


class TriggerExecutionObject(ApiModel):
    """An execution as the API shows it (the SDK's TriggerExecution)."""

    id: str
    trigger_id: str
    interaction_id: str | None = None
    scheduled_time: Timestamp | None = None
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    environment_id: str | None = None
    status: Literal["in_progress", "completed", "failed", "skipped", "timed_out"]
    error: str | None = None


class TriggerExecutionList(ApiModel):
    trigger_executions: list[TriggerExecutionObject]
    next_page_token: str | None = None


class TriggerObject(ApiModel):
    """A Trigger as the API shows it (the SDK's Trigger)."""

    id: str
    interaction: dict[str, Any] = Field(json_schema_extra=FREE_FORM)
    schedule: str
    time_zone: str
    status: Literal["active", "paused", "error"]
    display_name: str | None = None
    environment_id: str | None = None
    execution_timeout_seconds: int | None = None
    max_consecutive_failures: int | None = None
    consecutive_failure_count: int
    create_time: Timestamp | None = None
    update_time: Timestamp | None = None
    last_run_time: Timestamp | None = None
    next_run_time: Timestamp | None = None
    last_pause_time: Timestamp | None = None
    last_resume_time: Timestamp | None = None
    previous_interaction_id: str | None = None


class TriggerList(ApiModel):
    triggers: list[TriggerObject]
    next_page_token: str | None = None


def _as_time(timestamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def next_time(spec: TriggerSpec, after: str) -> str:
    """The first scheduled time after `after`, in the trigger's time zone."""
    zone = zoneinfo.ZoneInfo(spec.time_zone)
    return _stamp(croniter(spec.schedule, _as_time(after).astimezone(zone)).get_next(dt.datetime))


def due(spec: TriggerSpec, since: str, now: str) -> str | None:
    """The latest scheduled time after `since` and not after `now`, if any."""
    zone = zoneinfo.ZoneInfo(spec.time_zone)
    latest = croniter(spec.schedule, _as_time(now).astimezone(zone)).get_prev(dt.datetime)
    if croniter.match(spec.schedule, _as_time(now).astimezone(zone)):
        latest = _as_time(now)
    return _stamp(latest) if latest > _as_time(since) else None


def execution_name(trigger: str, scheduled: str) -> str:
    """The interaction an execution is: the same for the same scheduled time."""
    return f"{trigger}-{hashlib.sha256(scheduled.encode()).hexdigest()[:12]}"


def execution_view(obj: dict[str, Any]) -> dict[str, Any]:
    """An execution's Interaction as the SDK's TriggerExecution."""
    meta, status = obj["metadata"], obj.get("status") or {}
    annotations = meta.get("annotations") or {}
    phase = status.get("phase")
    if TIMED_OUT_ANNOTATION in annotations and phase in TERMINAL_PHASES:
        state = "timed_out"
    elif phase == "completed":
        state = "completed"
    elif phase in FAILED_PHASES or phase == "requires_action":
        state = "failed"
    else:
        state = "in_progress"
    view: dict[str, Any] = {
        "id": meta["name"],
        "trigger_id": (meta.get("labels") or {})[TRIGGER_LABEL],
        "interaction_id": meta["name"],
        "scheduled_time": annotations.get(SCHEDULED_ANNOTATION) or meta.get("creationTimestamp"),
        "start_time": meta.get("creationTimestamp"),
        "status": state,
    }
    if (environment := obj["spec"].get("environment")) and isinstance(environment, str):
        view["environment_id"] = environment
    if phase in TERMINAL_PHASES:
        view["end_time"] = status.get("updated")
        if errors := status.get("errors"):
            view["error"] = errors[0].get("message")
        elif state == "failed":
            view["error"] = f"the interaction ended {phase}"
    return TriggerExecutionObject.model_validate(view).to_wire()


def consecutive_failures(executions: list[dict[str, Any]], since: str | None) -> int:
    """Failed executions in a row, newest first, among those started after `since` (a resume
    starts the count again)."""
    count = 0
    for execution in executions:
        if since and (execution.get("start_time") or "") < since:
            break
        if execution["status"] == "in_progress":
            continue
        if execution["status"] == "completed":
            break
        count += 1
    return count


def trigger_view(obj: dict[str, Any], executions: list[dict[str, Any]]) -> dict[str, Any]:
    """A Trigger resource as the SDK's Trigger (executions newest first)."""
    meta = obj["metadata"]
    spec = TriggerSpec.from_kube(obj["spec"])
    status = TriggerStatus.from_kube(obj.get("status") or {})
    state = "error" if status.errored else spec.status
    view: dict[str, Any] = {
        "id": meta["name"],
        "interaction": spec.interaction,
        "schedule": spec.schedule,
        "time_zone": spec.time_zone,
        "status": state,
        "create_time": meta.get("creationTimestamp"),
        "consecutive_failure_count": consecutive_failures(executions, status.last_resume_time),
    }
    optional = {
        "display_name": spec.display_name,
        "environment_id": spec.environment_id,
        "execution_timeout_seconds": spec.execution_timeout_seconds,
        "max_consecutive_failures": spec.max_consecutive_failures,
        "last_run_time": status.last_run_time,
        "previous_interaction_id": status.previous_interaction_id,
        "last_pause_time": status.last_pause_time,
        "last_resume_time": status.last_resume_time,
        "update_time": (meta.get("annotations") or {}).get(UPDATED_ANNOTATION),
    }
    if state == "active":
        optional["next_run_time"] = next_time(
            spec,
            status.last_scheduled
            or meta.get("creationTimestamp")
            or _stamp(dt.datetime.now(dt.UTC)),
        )
    return TriggerObject.model_validate(view | optional).to_wire()
