"""What a chaos run proves: pure functions from what the clients saw and what the stack holds
afterwards to counts, a few example ids per failure, and the printed table."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from tests.chaos.load import KEY_LABEL, Load, Run, Timeline, event_order, output_text, terminal
from tether.store.events import TERMINAL_EVENT, is_end

EXAMPLES = 5
REPORT_KEY = pytest.StashKey[str]()
SCALE_OUT_KEY = pytest.StashKey[str]()
"""Where the chaos fixture leaves its table, for the terminal summary."""


@dataclass
class Check:
    """One property of the run: how many things broke it, and a few of them."""

    title: str
    bad: int = 0
    of: int = 0
    examples: list[str] = field(default_factory=list)

    def fail(self, example: str) -> None:
        self.bad += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)

    @property
    def ok(self) -> bool:
        return self.bad == 0

    def __str__(self) -> str:
        lines = [f"{self.title}: {self.bad} of {self.of} bad"]
        lines += [f"  e.g. {example}" for example in self.examples]
        return "\n".join(lines)


@dataclass
class After:
    """The stack's state once the faults stopped and the stragglers were waited for."""

    listed: dict[str, dict[str, Any]]  # id -> the interaction, as the list answers it
    replays: dict[str, list[dict[str, Any]] | str]  # id -> its events from 0, or what failed
    logged_completions: dict[str, int]  # id -> interaction.completed events in its event log
    leftovers: list[str]  # "kind/name (interaction)" of sandbox objects still there
    restarts: dict[str, int]  # supervisor restarts per component
    resources: dict[str, Any] = field(default_factory=dict)  # id -> resource, if not completed


@dataclass
class Report:
    figures: dict[str, Any]
    checks: dict[str, Check]
    resources: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        checks = {k: asdict(c) for k, c in self.checks.items()}
        return {"figures": self.figures, "checks": checks, "resources": self.resources}

    def table(self) -> str:
        width = max(len(k) for k in self.figures) + 2
        lines = ["figure".ljust(width) + "value"]
        lines += [f"{name.ljust(width)}{value}" for name, value in self.figures.items()]
        lines.append("")
        width = max(len(c.title) for c in self.checks.values()) + 2
        lines.append("check".ljust(width) + "bad / of")
        for check in self.checks.values():
            verdict = "ok" if check.ok else "FAILED"
            lines.append(f"{check.title.ljust(width)}{check.bad} / {check.of}  {verdict}")
            lines += [f"    e.g. {example}" for example in check.examples]
        return "\n".join(lines)


def build(load: Load, runs: list[Run], timeline: Timeline, after: After) -> Report:
    by_id = {run.id: run for run in runs if run.id}
    checks = {
        "terminal": _terminal(after),
        "completions": _completions(after),
        "lost": _lost(runs, after),
        "duplicated": _duplicated(after),
        "unanswered": _unanswered(runs),
        "leftovers": _leftovers(after),
        "answers": _answers(timeline),
        "streams": _streams(runs, after),
        "endings": _endings(runs, after),
        "faults": _faults(load, timeline, after),
    }
    kills = Counter(o.component for o in timeline.outages)
    statuses = Counter(i["status"] for i in after.listed.values())
    creates = [a for a in timeline.answers if a.kind.startswith("create")]
    figures = {
        "seed": load.seed,
        "kills (supervisor restarts)": ", ".join(
            f"{c} {kills[c]} ({after.restarts.get(c, 0)})" for c in load.components
        ),
        "outage seconds, all kills": round(
            sum((o.end or timeline.now()) - o.start for o in timeline.outages), 1
        ),
        "background runs (agent runs)": f"{load.background_runs} ({load.agent_runs})",
        "synchronous creates": load.sync_creates,
        "streams": load.streams,
        "create requests sent, with retries": len(creates),
        "cancels sent": sum(1 for r in runs if r.cancel_answer),
        "streams cut and resumed": sum(1 for r in runs if r.cuts),
        "store=false retries told 'ended, not kept'": sum(1 for r in runs if r.unkept),
        "runs in flight at peak": timeline.peak_in_flight,
        "runs in flight at each kill": timeline.in_flight_at_kills,
        "interactions at the end, by status": dict(sorted(statuses.items())),
        "answers by status": dict(sorted(Counter(a.status for a in timeline.answers).items())),
        "lost runs": checks["lost"].bad,
        "duplicated runs": checks["duplicated"].bad,
        "duplicated completions": sum(1 for n in after.logged_completions.values() if n > 1),
        "ids acknowledged": len(by_id),
    }
    return Report(figures, checks, after.resources)


def _terminal(after: After) -> Check:
    check = Check("every interaction ends (terminal status)", of=len(after.listed))
    for id_, interaction in after.listed.items():
        if not terminal(interaction["status"]):
            check.fail(f"{id_} {interaction['status']}")
    return check


def _completions(after: After) -> Check:
    """Exactly one interaction.completed in each log, and a replay from 0 ends with it."""
    ended = {i: x for i, x in after.listed.items() if terminal(x["status"])}
    check = Check("exactly one interaction.completed each", of=len(ended))
    for id_, interaction in ended.items():
        logged = after.logged_completions.get(id_, 0)
        replay = after.replays.get(id_)
        if logged != 1:
            check.fail(f"{id_} {interaction['status']}: {logged} in its event log")
        elif isinstance(replay, str):
            check.fail(f"{id_} {interaction['status']}: replay from 0 {replay}")
        elif replay is not None and (
            replay[-1].get("event_type") != TERMINAL_EVENT
            or (replay[-1].get("interaction") or {}).get("status") != interaction["status"]
        ):
            last = replay[-1].get("event_type")
            check.fail(f"{id_} {interaction['status']}: replay from 0 ends with {last}")
    return check


def _lost(runs: list[Run], after: After) -> Check:
    stored = [r for r in runs if r.id and r.store]
    check = Check("no acknowledged run lost", of=len(stored))
    for run in stored:
        if run.id not in after.listed:
            check.fail(f"{run.id} ({run.kind}) is gone")
    return check


def _duplicated(after: After) -> Check:
    """Interactions sharing an Idempotency-Key: a retried create that ran twice."""
    ids = defaultdict(list)
    for id_, interaction in after.listed.items():
        ids[(interaction.get("labels") or {}).get(KEY_LABEL)].append(id_)
    check = Check("no run created twice (same Idempotency-Key)", of=len(ids))
    for key, same in ids.items():
        if len(same) > 1:
            check.fail(f"key {key}: {', '.join(sorted(same))}")
    return check


def _unanswered(runs: list[Run]) -> Check:
    check = Check("every create answered with its run", of=len(runs))
    for run in runs:
        if run.refused:
            check.fail(f"{run.id or run.key} ({run.kind}): {run.refused}")
    return check


def _leftovers(after: After) -> Check:
    sandboxed = sum(1 for i in after.listed.values() if i.get("agent"))
    check = Check("no sandbox pod, Secret or NetworkPolicy left", of=sandboxed)
    for leftover in after.leftovers:
        check.fail(leftover)
    return check


def _answers(timeline: Timeline) -> Check:
    """5xx only as a 503 during an outage; 4xx only for a cancel that came after the end."""
    check = Check("no error answer but 503 in an outage", of=len(timeline.answers))
    for a in timeline.answers:
        # A cancel after the end, or a retried store=false create after its run ended unkept.
        late = a.status == 400 and (a.kind == "cancel" or a.kind.endswith("-unstored"))
        if a.status >= 500 and not (a.status == 503 and timeline.during_outage(a.at)):
            where = "in" if timeline.during_outage(a.at) else "outside"
            check.fail(f"{a.status} at {a.at:.1f}s {where} an outage, {a.kind}: {a.detail}")
        elif 400 <= a.status < 500 and not late:
            check.fail(f"{a.status} at {a.at:.1f}s, {a.kind}: {a.detail}")
    return check


def _streams(runs: list[Run], after: After) -> Check:
    """What a client read across cuts is the log exactly: ids strictly increasing, ending with
    the end event, and equal to a replay from 0 after the end."""
    streamed = [r for r in runs if r.events]
    check = Check("every stream exact across its cuts", of=len(streamed))
    for run in streamed:
        ids = [e.get("event_id", "") for e in run.events]
        disorder = next(
            (i for i in range(1, len(ids)) if event_order(ids[i - 1]) >= event_order(ids[i])),
            None,
        )
        replay = after.replays.get(run.id or "")
        label = f"{run.id} ({run.kind}, {run.cuts} cuts)"
        if disorder is not None:
            check.fail(f"{label}: event {ids[disorder]} after {ids[disorder - 1]}")
        elif not is_end(run.events[-1]):
            check.fail(f"{label}: the client never saw the end")
        elif isinstance(replay, list) and replay != run.events:
            seen, logged = set(ids), [e.get("event_id") for e in replay]
            missing = [i for i in logged if i not in seen]
            extra = [i for i in ids if i not in set(logged)]
            check.fail(f"{label}: missing {missing[:3]}, not in the log {extra[:3]}")
    return check


def _endings(runs: list[Run], after: After) -> Check:
    """Each run ends as its model decides, or cancelled if the cancel said so; a cancel's answer
    agrees with the final status."""
    ended = [r for r in runs if r.id and not r.refused]
    check = Check("every run ends as its model or cancel decided", of=len(ended))
    for run in ended:
        final = after.listed.get(run.id) if run.store else run.final
        if final is None or not terminal(final.get("status")):
            continue  # counted as lost or not terminal
        want = {run.expected_status}
        if run.cancel_after is not None:
            code, said = run.cancel_answer or (None, None)
            if code == 200 and terminal(said):
                want = {said}
            elif code != 400:  # answered before the end, or never answered
                want.add("cancelled")
        status = final["status"]
        if status not in want:
            errors = [
                f"{e.get('code')}: {_last_line(e.get('message'))}"
                for e in final.get("errors") or []
            ]
            cancel = f", cancel answered {run.cancel_answer}" if run.cancel_answer else ""
            check.fail(f"{run.id} ({run.kind}) {status} {errors}, expected {want}{cancel}")
        elif (
            status == run.expected_status == "completed"
            and run.expected_text is not None
            and (text := output_text(final)) != run.expected_text
        ):
            check.fail(f"{run.id} ({run.kind}) says {text!r}, not {run.expected_text!r}")
    return check


def _last_line(message: str | None) -> str:
    """The gist of an error message, which may end with a traceback's last lines."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _faults(load: Load, timeline: Timeline, after: After) -> Check:
    """The faults happened and the stack came back each time: else the other checks prove little."""
    kills = Counter(o.component for o in timeline.outages)
    check = Check("each component killed, restarted, healthy again", of=len(timeline.outages))
    for component in load.components:
        if kills[component] < load.kills_each:
            check.fail(f"{component} killed {kills[component]} times, not {load.kills_each}")
        elif after.restarts.get(component, 0) < kills[component]:
            restarts = after.restarts.get(component, 0)
            check.fail(f"{component} killed {kills[component]} times, restarted {restarts}")
    for outage in timeline.outages:
        if outage.end is None:
            check.fail(f"{outage.component} killed at {outage.start:.1f}s: never healthy again")
    return check
