"""Schemathesis drives the real gateway from its own /openapi.json: requests generated from the
document (valid ones and deliberately invalid ones) never get a 5xx, every answer is one the
document describes, and every error has the API's error body.

Seeded and bounded, so that CI sends the same cases every run, within about a minute.
"""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tether.gateway.openapi import openapi_document

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

SEED = 20260909
EXAMPLES_PER_OPERATION = 15


@schemathesis.check
def error_body(ctx, response, case) -> None:
    """Every 4xx and 5xx carries {"error": {"code", "message"}}, whatever the route."""
    if response.status_code < 400:
        return
    try:
        error = json.loads(response.content)["error"]
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
    except (ValueError, KeyError, TypeError, AssertionError) as problem:
        raise AssertionError(
            f"{response.status_code} without the API's error body: {response.content[:300]!r}"
        ) from problem


@pytest.fixture(scope="module")
def fuzz_key(stack) -> str:
    """A tenant of its own: the fuzzer deletes what it finds."""
    return stack.add_tenant("fuzz-schema")


# The document is the one the gateway serves (the first test checks that), loaded here at import
# time because schemathesis parametrizes by operation at collection, before the stack exists.
schema = schemathesis.openapi.from_dict(
    openapi_document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": EXAMPLES_PER_OPERATION,
                "deterministic": True,
                "database": "none",
            },
            # Values learnt from responses (fresh ids every run) would make each run differ.
            "phases": {
                "fuzzing": {
                    "extra-data-sources": {"responses": False},
                    "error-feedback": {"enabled": False},
                },
                "stateful": {"enabled": False},
            },
        }
    ),
)


def test_the_gateway_serves_this_document(stack):
    assert httpx.get(f"{stack.url}/openapi.json").json() == json.loads(
        json.dumps(openapi_document())
    )


@schema.parametrize()
def test_generated_requests_get_documented_answers_and_never_a_5xx(
    case, stack, fuzz_key, fuzz_counts
):
    response = case.call(base_url=stack.url, headers={"x-goog-api-key": fuzz_key}, timeout=60)
    fuzz_counts["schemathesis"] += 1
    fuzz_counts["5xx"] += response.status_code >= 500
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            error_body,
        ],
    )
