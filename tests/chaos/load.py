"""The chaos suite's load: clients that behave like a careful SDK user, the runs they start, and
the timeline of answers and outages they see. No stack here: the test module drives it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tether.api.interaction import TERMINAL_PHASES
from tether.store.events import is_end

KEY_LABEL = "chaos-key"
"""Every interaction carries its Idempotency-Key as this label, so duplicates can be counted."""


@dataclass(frozen=True)
class Load:
    """How hard the suite pushes, from CHAOS_* variables; the defaults are at least the issue's
    minimums (more background runs, so that 50 are in flight whenever the first kill lands)."""

    seed: int = 9
    background_runs: int = 64
    agent_runs: int = 12  # of the background runs
    sync_creates: int = 200
    streams: int = 150
    concurrency: int = 50
    kills_each: int = 2
    components: tuple[str, ...] = ("operator", "gateway", "redis", "kube-apiserver")
    min_gap: float = 5.0
    max_gap: float = 10.0
    settle_seconds: float = 60.0
    outage_grace: float = 5.0
    retry_seconds: float = 120.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Load:
        def get(name: str, default: Any) -> Any:
            value = environ.get(f"CHAOS_{name.upper()}")
            if value is None:
                return default
            if isinstance(default, tuple):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return type(default)(value)

        return cls(**{name: get(name, default) for name, default in vars(cls()).items()})

    def kill_schedule(self) -> list[tuple[float, str]]:
        """(seconds from the start, component): each component `kills_each` times, in a seeded
        random order, `min_gap` to `max_gap` seconds apart."""
        rng = random.Random(f"{self.seed}-kills")
        order = [c for c in self.components for _ in range(self.kills_each)]
        rng.shuffle(order)
        at, schedule = 0.0, []
        for component in order:
            at += rng.uniform(self.min_gap, self.max_gap)
            schedule.append((round(at, 2), component))
        return schedule


@dataclass
class Answer:
    at: float  # seconds since the start of the load
    kind: str  # what the client was doing: create-sync, resume, cancel, ...
    status: int  # the HTTP status, or 0 for a connection error or timeout
    detail: str


@dataclass
class Outage:
    component: str
    start: float
    end: float | None = None  # when the whole stack answered healthy again


@dataclass
class Timeline:
    """What the clients saw, when, and which faults were in progress."""

    grace: float
    t0: float = field(default_factory=time.monotonic)
    answers: list[Answer] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    in_flight_at_kills: list[int] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def answer(self, kind: str, status: int, detail: str) -> None:
        self.answers.append(Answer(round(self.now(), 3), kind, status, detail))

    def during_outage(self, at: float) -> bool:
        """Within an outage, or `grace` seconds after the stack was healthy again."""
        return any(
            o.start <= at <= (math.inf if o.end is None else o.end + self.grace)
            for o in self.outages
        )

    @contextlib.contextmanager
    def flight(self):
        """Count a run as in flight until its client has seen it end."""
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1


@dataclass
class Run:
    """One interaction a client asked for, and everything the client saw of it."""

    key: str  # the Idempotency-Key, also the KEY_LABEL label
    kind: str  # sync, stream, echo-poll, echo-stream, echo-cancel, agent-<model>
    body: dict[str, Any]
    expected_status: str  # how its model ends it, unless a cancel got there first
    expected_text: str | None
    start_at: float = 0.0  # seconds after the load starts
    cancel_after: float | None = None
    cut_after: int | None = None  # events to read before cutting the connection on purpose
    id: str | None = None
    final: dict[str, Any] | None = None  # the interaction as the client last saw it end
    refused: str | None = None  # a create answered with an error, or never answered
    cancel_answer: tuple[int, str | None] | None = None  # (HTTP status, status in the body)
    events: list[dict[str, Any]] = field(default_factory=list)  # SSE events, across cuts
    cuts: int = 0  # connections cut (by us or by a fault) and resumed
    unkept: bool = False  # store=false, and its retried create was told it ended unkept

    @property
    def store(self) -> bool:
        return self.body.get("store", True)


class GaveUp(Exception):
    """Nothing but connection errors and 503s for longer than a client waits."""


class StreamCut(Exception):
    """The connection dropped, or closed, before the stream's last event."""


def output_text(interaction: Mapping[str, Any] | None) -> str:
    """The text of the model_output steps, as the SDK's `output_text` joins it."""
    texts = []
    for step in (interaction or {}).get("steps") or []:
        if step.get("type") == "model_output":
            texts += [
                c.get("text", "") for c in step.get("content") or [] if c.get("type") == "text"
            ]
    return "".join(texts)


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """The JSON `data` of each server-sent event; comments (pings) are skipped."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield json.loads("\n".join(data))
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


class Client:
    """httpx with the retries a sensible SDK user has: on connection errors and 503 only, with
    backoff, for `retry_seconds`; every answer goes on the timeline."""

    def __init__(self, url: str, api_key: str, timeline: Timeline, retry_seconds: float) -> None:
        self.http = httpx.AsyncClient(
            base_url=url,
            headers={"x-goog-api-key": api_key},
            timeout=httpx.Timeout(90, connect=5, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        self.timeline = timeline
        self.retry_seconds = retry_seconds

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _backoff(self, deadline: float, delay: float, what: str) -> float:
        if time.monotonic() + delay > deadline:
            raise GaveUp(f"{what}: only connection errors and 503 for {self.retry_seconds:.0f}s")
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        return min(delay * 2, 4.0)

    async def call(self, kind: str, method: str, path: str, **options: Any) -> httpx.Response:
        deadline, delay = time.monotonic() + self.retry_seconds, 0.25
        while True:
            try:
                response = await self.http.request(method, path, **options)
            except httpx.TransportError as error:
                self.timeline.answer(kind, 0, f"{method} {path}: {type(error).__name__}")
            else:
                self.timeline.answer(kind, response.status_code, _detail(method, path, response))
                if response.status_code != 503:
                    return response
            delay = await self._backoff(deadline, delay, f"{method} {path}")

    async def events(
        self, kind: str, method: str, path: str, **options: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Connect (retrying as `call` does), then yield the stream's events. A connection lost
        after the stream began is a StreamCut, for the caller to resume from what it saw."""
        deadline, delay = time.monotonic() + self.retry_seconds, 0.25
        timeout = httpx.Timeout(30, connect=5, pool=None)  # pings come every few seconds
        while True:
            began = False
            try:
                async with self.http.stream(method, path, timeout=timeout, **options) as response:
                    if response.status_code != 200:
                        await response.aread()
                    self.timeline.answer(
                        kind, response.status_code, _detail(method, path, response)
                    )
                    if response.status_code == 200:
                        began = True
                        async for event in parse_sse(response.aiter_lines()):
                            yield event
                        raise StreamCut(f"{method} {path}: closed before the last event")
                    if response.status_code != 503:
                        raise httpx.HTTPStatusError(
                            _detail(method, path, response),
                            request=response.request,
                            response=response,
                        )
            except httpx.TransportError as error:
                if began:
                    self.timeline.answer(kind, 0, f"{method} {path}: cut ({type(error).__name__})")
                    raise StreamCut(f"{method} {path}: {type(error).__name__}") from error
                self.timeline.answer(kind, 0, f"{method} {path}: {type(error).__name__}")
            delay = await self._backoff(deadline, delay, f"{method} {path}")


def _detail(method: str, path: str, response: httpx.Response) -> str:
    if response.status_code < 400:
        return f"{method} {path}"
    return f"{method} {path}: {response.text[:200]}"


def _ended_unkept(response: httpx.Response) -> bool:
    """The answer to a retried store=false create whose run has ended (and was not kept)."""
    if response.status_code != 400:
        return False
    return response.json().get("error", {}).get("code") == "failed_precondition"


def _idempotent(run: Run) -> dict[str, Any]:
    return {"json": run.body, "headers": {"Idempotency-Key": run.key}}


async def follow(client: Client, run: Run, max_segments: int = 40) -> None:
    """Read `run`'s events to the end; after each cut (ours or a fault's), resume from the last
    event seen. Before the first event there is no id yet: the create is sent again, with the
    same Idempotency-Key."""
    for _ in range(max_segments):
        if run.events and is_end(run.events[-1]):
            run.final = run.events[-1].get("interaction") or run.final
            return
        if run.id is None:
            request = ("create-stream", "POST", "/v1/interactions", _idempotent(run))
        else:
            last = run.events[-1]["event_id"] if run.events else "0"
            params = {"stream": "true", "last_event_id": last}
            request = ("resume", "GET", f"/v1/interactions/{run.id}", {"params": params})
        kind, method, path, options = request
        try:
            async with contextlib.aclosing(client.events(kind, method, path, **options)) as events:
                async for event in events:
                    run.events.append(event)
                    run.id = run.id or (event.get("interaction") or {}).get("id")
                    if is_end(event):
                        break
                    if run.cut_after is not None and len(run.events) >= run.cut_after:
                        run.cut_after = None
                        run.cuts += 1
                        break  # leaving the block closes the connection mid-stream
        except StreamCut:
            run.cuts += 1
    raise GaveUp(f"{run.id or run.key}: the stream never reached its end in {max_segments} tries")


async def poll(client: Client, run: Run, every: float = 2.0) -> None:
    while True:
        response = await client.call("get", "GET", f"/v1/interactions/{run.id}")
        if response.status_code == 200 and response.json()["status"] in TERMINAL_PHASES:
            run.final = response.json()
            return
        if response.status_code != 200:
            raise GaveUp(f"GET {run.id}: {response.status_code} {response.text[:200]}")
        await asyncio.sleep(every)


async def perform(client: Client, run: Run) -> None:
    """What a client does with one run, from its create to seeing it end."""
    with client.timeline.flight():
        if run.body.get("stream"):
            await follow(client, run)
            return
        kind = "create-background" if run.body.get("background") else "create-sync"
        kind += "" if run.store else "-unstored"
        response = await client.call(kind, "POST", "/v1/interactions", **_idempotent(run))
        if not run.store and _ended_unkept(response):
            run.unkept = True  # a retry after its first answer was lost: by design, not kept
            return
        if response.status_code != 200:
            run.refused = f"{response.status_code} {response.text[:200]}"
            return
        created = response.json()
        run.id = created["id"]
        if not run.body.get("background"):
            run.final = created
            return
        if run.cancel_after is not None:
            await asyncio.sleep(run.cancel_after)
            answer = await client.call("cancel", "POST", f"/v1/interactions/{run.id}/cancel")
            status = answer.json().get("status") if answer.status_code == 200 else None
            run.cancel_answer = (answer.status_code, status)
        if run.cut_after is not None:
            await follow(client, run)
        else:
            await poll(client, run)


async def launch(client: Client, run: Run, gate: asyncio.Semaphore) -> None:
    """Start `run` at its moment, once `gate` lets it; a run the client gives up on is refused."""
    await asyncio.sleep(max(0.0, run.start_at - client.timeline.now()))
    async with gate:
        try:
            await perform(client, run)
        except (GaveUp, httpx.HTTPStatusError) as error:
            run.refused = run.refused or str(error)


def event_order(event_id: str) -> tuple[int, int]:
    millis, _, seq = event_id.partition("-")
    return int(millis), int(seq or 0)


def terminal(status: str | None) -> bool:
    return status in TERMINAL_PHASES


WEATHER_TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"functionCalls": [{"name": name, "arguments": arguments}]}


AGENT_SCRIPTS: dict[str, tuple[list[dict[str, Any]], str, str | None]] = {
    # model name: (its scripted responses, how it ends, its final text)
    "chaos-slow": (
        [{"text": "done after a while", "delaySeconds": 3}],
        "completed",
        "done after a while",
    ),
    "chaos-tools": (
        [
            _call("write_file", path="a.txt", content="chaos"),
            _call("run_code", language="bash", code="cat a.txt"),
            {"text": "wrote and read a.txt"},
        ],
        "completed",
        "wrote and read a.txt",
    ),
    "chaos-asker": ([_call("get_weather", city="Oslo")], "requires_action", None),
    "chaos-sleeper": ([{"text": "woke up", "delaySeconds": 20}], "completed", "woke up"),
}


def plan(load: Load, kills: list[float]) -> list[Run]:
    """Every run of the load, decided by the seed: what it asks, when it starts (in bursts a
    moment before the `kills`, so that each kill finds many runs in flight), when it is
    cancelled or its stream cut."""
    rng = random.Random(f"{load.seed}-load")
    runs: list[Run] = []
    kills = kills or [3.0]

    def add(
        kind: str,
        body: dict[str, Any],
        status: str,
        text: str | None,
        start: float | None = None,
        **how: Any,
    ) -> Run:
        key = f"{kind[0]}{len(runs)}-{rng.getrandbits(64):016x}"
        body = {**body, "labels": {KEY_LABEL: key}}
        if start is None:
            start = max(0.0, rng.choice(kills) - rng.uniform(0.2, 2.5))
        run = Run(key, kind, body, status, text, start_at=start, **how)
        runs.append(run)
        return run

    for i in range(load.background_runs):
        if i < load.agent_runs:
            model = list(AGENT_SCRIPTS)[i % len(AGENT_SCRIPTS)]
            _, status, text = AGENT_SCRIPTS[model]
            body: dict[str, Any] = {
                "agent": "eva",
                "input": "go",
                "agent_config": {"type": "dynamic", "model": model, "timeout_seconds": 120},
                "background": True,
            }
            if model == "chaos-asker":
                body["tools"] = [WEATHER_TOOL]
            how: dict[str, Any] = {}
            if model == "chaos-slow":
                how["cut_after"] = rng.randint(1, 3)
            if model == "chaos-sleeper":
                how["cancel_after"] = rng.uniform(1, 8)
            add(f"agent-{model}", body, status, text, **how)
            continue
        # Model runs start at once and sleep long, so that the first kills find them all in
        # flight beside the agent runs, creates and streams that come in bursts before each kill.
        long = True
        seconds = rng.randint(12, 30)
        body = {"model": "echo", "input": f"/sleep {seconds}", "background": True}
        mode = rng.choice(["poll", "stream", "cancel"])
        how = {}
        if mode == "stream":
            how["cut_after"] = rng.randint(1, 3)
        if mode == "cancel":
            how["cancel_after"] = rng.uniform(0, seconds + 1)
        start = rng.uniform(0, 2) if long else None
        add(f"echo-{mode}", body, "completed", f"slept {seconds}", start, **how)

    for i in range(load.sync_creates):
        text = "/sleep 6" if i % 10 == 0 else f"sync {i} {rng.choice(['hi', 'hello there'])}"
        body = {"model": "echo", "input": text}
        if i % 10 == 5:
            body["store"] = False
        add("sync", body, "completed", "slept 6" if text == "/sleep 6" else text)

    for i in range(load.streams):
        if rng.random() < 0.3:
            seconds = rng.randint(2, 4)
            text, expected = f"/sleep {seconds}", f"slept {seconds}"
        else:
            text = expected = f"stream {i} alpha beta gamma delta epsilon"
        cut = rng.randint(1, 4) if rng.random() < 0.5 else None
        body = {"model": "echo", "input": text, "stream": True}
        add("stream", body, "completed", expected, cut_after=cut)
    return runs
