"""Hostile requests, one per line: each is refused with a 4xx and the API's error body, never a
5xx or a plain-text page, and none of them changes what the tenant already has.

Requests go out through http.client, which sends the path and the body byte for byte (no
normalization of `%2e` or `..`), as an attacker's client would.
"""

# The table below keeps one case per line, however long.
# ruff: noqa: E501

from __future__ import annotations

import gzip
import http.client
import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

ANY_4XX = range(400, 500)


@dataclass(frozen=True)
class Hostile:
    name: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    expect: range | tuple[int, ...] = ANY_4XX
    parser: bool = False
    """Refused by aiohttp's HTTP parser (a line over the gateway's 32 KiB limit) before the
    application sees it: a plain-text 400, which the application cannot shape."""


def deep(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def create(body: str | bytes, **headers: str) -> tuple[str, str, bytes, dict[str, str]]:
    raw = body.encode() if isinstance(body, str) else body
    return "POST", "/v1/interactions", raw, {"content-type": "application/json", **headers}


def echo_with(fields: str) -> str:
    """A valid echo create with `fields` (JSON members, no braces) added."""
    return '{"model": "echo", "input": "hi", ' + fields + "}"


H = Hostile
# fmt: off
ID = "{id}"  # replaced by the id of an interaction the tenant has
BIG = "x" * 9000
HUGE = "x" * 65_000
CASES = [
    # -- M6 of the issue: each answered 500 --
    H("non-utf8-body", *create(b'{"model": "echo", "input": "\xff\xfe\xfd"}'), expect=(400,)),
    H("unknown-charset", *create(echo_with('"store": true'), **{"content-type": "application/json; charset=x-bogus"}), expect=(400, 415)),
    H("bad-gzip", *create(echo_with('"store": true'), **{"content-encoding": "gzip"}), expect=(400, 415)),
    H("input-item-type-object", *create('{"model": "echo", "input": [{"type": {"a": 1}}]}'), expect=(400,)),
    H("input-item-type-array", *create('{"model": "echo", "input": [{"type": ["text"]}]}'), expect=(400,)),
    H("json-1000-deep", *create(deep(1000)), expect=(400,)),
    H("json-1000-deep-in-input", *create('{"model": "echo", "input": ' + deep(1000) + "}"), expect=(400,)),
    H("json-500-deep-in-tool-parameters", *create(echo_with('"tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "x": ' + deep(500) + "}}]")), expect=(400,)),
    H("json-500-deep-in-contents", *create('{"model": "echo", "input": [{"type": "text", "text": "hi", "x": ' + deep(500) + "}]}"), expect=(400,)),
    H("integer-over-4300-digits", *create(echo_with('"generation_config": {"seed": 1' + "0" * 5000 + "}")), expect=(400,)),
    H("logs-tail-lines-abc", "GET", f"/v1/interactions/{ID}/logs?tail_lines=abc", expect=(400,)),
    H("logs-tail-lines-1e3", "GET", f"/v1/interactions/{ID}/logs?tail_lines=1e3", expect=(400,)),
    H("get-dot-id", "GET", "/v1/interactions/%2e", expect=(400,)),
    # -- path tricks, wherever an id enters --
    *(
        H(f"{method.lower()}{suffix.replace('/', '-') or '-'}-{label}", method, f"/v1/interactions/{trick}{suffix}")
        for method, suffix in [
            ("GET", ""),
            ("DELETE", ""),
            ("POST", "/cancel"),
            ("GET", "/files"),
            ("GET", "/logs"),
            ("GET", "/files/x.txt"),
        ]
        for label, trick in [
            ("dot", "%2e"),
            ("dotdot", "%2e%2e"),
            ("dotdot-slash", "..%2f"),
            ("dotdot-slash-dotdot", "..%2f..%2f"),
            ("nul", "%00"),
            ("long", "ix-" + "a" * 5000),
            ("64-chars", "a" * 64),
            ("uppercase", "IX-" + "A" * 20),
            ("unicode", "ix-%C3%A9"),
            ("space", "ix-%20a"),
        ]
    ),
    H("delete-beta-dot-id", "DELETE", "/v1beta/interactions/%2e"),
    H("files-path-escape", "GET", f"/v1/interactions/{ID}/files/..%2f..%2fetc%2fpasswd", expect=(404,)),
    H("files-path-nul", "GET", f"/v1/interactions/{ID}/files/%00", expect=(400, 404)),
    # -- query parameters --
    H("last-event-id-beyond-64-bits", "GET", f"/v1/interactions/{ID}?stream=true&last_event_id=18446744073709551616-0", expect=(400,)),
    H("last-event-id-garbage", "GET", f"/v1/interactions/{ID}?stream=true&last_event_id=abc", expect=(400,)),
    H("stream-flag-garbage", "GET", f"/v1/interactions/{ID}?stream=maybe", expect=(400,)),
    H("garbage-page-token", "GET", "/v1/interactions?page_token=garbage", expect=(400,)),
    H("status-bogus", "GET", "/v1/interactions?status=bogus", expect=(400,)),
    H("page-size-zero", "GET", "/v1/interactions?page_size=0", expect=(400,)),
    H("page-size-huge", "GET", "/v1/interactions?page_size=1" + "0" * 5000, expect=(400,)),
    H("label-without-colon", "GET", "/v1/interactions?label=nocolon", expect=(400,)),
    H("label-bad-selector", "GET", "/v1/interactions?label=a:b%20c,d", expect=(400,)),
    H("logs-container-bogus", "GET", f"/v1/interactions/{ID}/logs?container=bogus", expect=(400,)),
    H("logs-tail-lines-negative", "GET", f"/v1/interactions/{ID}/logs?tail_lines=-1", expect=(400,)),
    # -- bodies --
    H("empty-body", *create(b""), expect=(400,)),
    H("null-body", *create("null"), expect=(400,)),
    H("array-body", *create("[]"), expect=(400,)),
    H("array-of-object-body", *create('[{"model": "echo", "input": "hi"}]'), expect=(400,)),
    H("string-body", *create('"hi"'), expect=(400,)),
    H("previous-interaction-id-empty", *create(echo_with('"previous_interaction_id": ""')), expect=(400,)),
    H("previous-interaction-id-dot", *create(echo_with('"previous_interaction_id": "."')), expect=(400,)),
    H("previous-interaction-id-object", *create(echo_with('"previous_interaction_id": {}')), expect=(400,)),
    H("nan-temperature", *create(echo_with('"generation_config": {"temperature": NaN}')), expect=(400,)),
    H("infinite-temperature", *create(echo_with('"generation_config": {"temperature": Infinity}')), expect=(400,)),
    H("float-overflow-temperature", *create(echo_with('"generation_config": {"temperature": 1e400}')), expect=(400,)),
    H("model-name-10k", *create('{"model": "' + "m" * 10000 + '", "input": "hi"}'), expect=(400,)),
    H("model-name-nul", *create('{"model": "echo\\u0000", "input": "hi"}'), expect=(400, 404)),
    H("labels-1000", *create(echo_with('"labels": {' + ", ".join(f'"k{i}": "v"' for i in range(1000)) + "}")), expect=(400,)),
    H("input-just-under-1mib", *create('{"model": "echo", "input": "' + "a" * 1_000_000 + '"}'), expect=(413,)),
    H("body-over-1mib", *create('{"model": "echo", "input": "' + "a" * 2_000_000 + '"}'), expect=(413,)),
    H("json-100000-deep", *create(deep(100_000)), expect=(400,)),
    H("gzip-bomb-like", *create(gzip.compress(b"[" * 2_000_000), **{"content-encoding": "gzip"}), expect=(400, 413, 415)),
    # -- the HTTP layer --
    H("url-over-8kib", "GET", "/v1/interactions?label=a:" + BIG),
    H("idempotency-key-over-8kib", *create(echo_with('"store": true'), **{"idempotency-key": BIG}), expect=(400,)),
    H("url-over-64kib", "GET", "/v1/interactions?label=a:" + HUGE, expect=(400,), parser=True),
    H("header-over-64kib", "GET", "/v1/interactions", headers={"x-padding": HUGE}, expect=(400,), parser=True),
    H("put-on-collection", "PUT", "/v1/interactions", b"{}", expect=(405,)),
    H("delete-on-collection", "DELETE", "/v1/interactions", expect=(405,)),
    H("patch-on-interaction", "PATCH", f"/v1/interactions/{ID}", b"{}", expect=(405,)),
    H("get-on-cancel", "GET", f"/v1/interactions/{ID}/cancel", expect=(405,)),
    H("post-on-files", "POST", f"/v1/interactions/{ID}/files", b"{}", expect=(405,)),
    H("unknown-route", "GET", "/v1/nothing-here", expect=(404,)),
    H("no-api-key", "GET", "/v1/interactions", headers={"x-goog-api-key": ""}, expect=(401,)),
]
# fmt: on


def send(url: str, key: str, case: Hostile, interaction_id: str) -> tuple[int, bytes]:
    """The request exactly as written (the path is not normalized); returns status and body."""
    target = urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
    headers = {"x-goog-api-key": key, **case.headers}
    if case.body is not None:
        headers["content-length"] = str(len(case.body))
    try:
        connection.putrequest(
            case.method, case.path.replace(ID, interaction_id), skip_accept_encoding=True
        )
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(case.body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def tenant(stack) -> str:
    return stack.add_tenant("fuzz-hostile")


@pytest.fixture(scope="module")
def existing(stack, tenant) -> list[str]:
    """Interactions the tenant has before the hostile requests: none may be touched."""
    ids = []
    for n in range(3):
        status, body = send(
            stack.url, tenant, Hostile("seed", *create(f'{{"model": "echo", "input": "{n}"}}')), ""
        )
        assert status == 200, body
        ids.append(json.loads(body)["id"])
    return ids


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_hostile_request_gets_a_4xx_with_the_error_body(
    stack, tenant, existing, fuzz_counts, case
):
    status, body = send(stack.url, tenant, case, existing[0])
    fuzz_counts["hostile"] += 1
    fuzz_counts["5xx"] += status >= 500
    assert status in case.expect, f"{status}: {body[:300]!r}"
    if case.parser:
        return
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        pytest.fail(f"{status} without the API's error body: {body[:300]!r}")
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]


def test_after_every_hostile_request_the_tenant_still_has_all_its_interactions(
    stack, tenant, existing
):
    # Run last in this module (definition order): whatever the path tricks did is visible now.
    for interaction_id in existing:
        status, body = send(
            stack.url, tenant, Hostile("get", "GET", f"/v1/interactions/{ID}"), interaction_id
        )
        assert status == 200, body
        assert json.loads(body)["status"] == "completed"
    status, body = send(stack.url, tenant, Hostile("list", "GET", "/v1/interactions"), "")
    assert status == 200, body
    assert set(existing) <= {item["id"] for item in json.loads(body)["interactions"]}
