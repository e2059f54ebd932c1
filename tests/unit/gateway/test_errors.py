"""How a refused body is explained: one line per field, named by its path."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tether.api.environment import CreateEnvironmentRequest
from tether.api.interaction import CreateInteractionRequest
from tether.gateway.errors import describe_validation


def explained(model, body) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return describe_validation(caught.value)


def test_of_a_unions_alternatives_the_one_that_got_furthest_names_the_field():
    network = {"allowlist": [{"domain": "ok.example.com"}, {"domain": "api.*.example.com"}]}
    body = {"agent": "eva", "input": "go", "environment": {"network": network}}
    message = explained(CreateInteractionRequest, body)
    assert message.startswith("environment.network.allowlist[1].domain: 'api.*.example.com' is")
    assert ";" not in message  # not every other shape environment and network could take


def test_a_value_no_alternative_takes_names_each_alternative_once():
    body = {"model": "echo", "input": "x", "environment": {"network": "nope"}}
    assert explained(CreateInteractionRequest, body) == (
        "environment.network: Input should be 'disabled'; "
        "environment.network: Input should be a valid dictionary or instance of EgressAllowlist"
    )


def test_fields_outside_unions_are_all_named():
    body = {"network": {"allowlist": [{"domain": "a b"}]}, "storage": 5, "bogus": 1}
    message = explained(CreateEnvironmentRequest, body)
    assert "network.allowlist[0].domain: 'a b' is not a domain pattern" in message
    assert "bogus: unknown field" in message
