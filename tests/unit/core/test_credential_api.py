"""A credential's request: the fields of its type, required and refused, named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tether.api.credential import (
    CreateCredentialRequest,
    StoredCredential,
    UpdateCredentialRequest,
    secret_name,
)


def test_each_type_takes_its_own_fields_and_splits_secrets_from_settings():
    bearer = CreateCredentialRequest.from_wire(
        {"id": "GITHUB_TOKEN", "type": "bearer_token", "token": "t", "prefix": ""}
    )
    assert (bearer.secrets(), bearer.config()) == ({"token": "t"}, {"prefix": ""})
    variable = CreateCredentialRequest.from_wire(
        {"id": "KEY", "type": "environment_variable", "value": "v", "injection_location": "query"}
    )
    assert variable.config() == {"injection_location": ["query"]}
    oauth = CreateCredentialRequest.from_wire(
        {
            "id": "OAUTH",
            "type": "oauth2",
            "client_id": "c",
            "client_secret": "s",
            "refresh_token": "r",
            "token_url": "https://auth.example.com/token",
        }
    )
    assert set(oauth.secrets()) == {"client_secret", "refresh_token"}


VARIABLE = {"id": "A", "type": "environment_variable", "value": "v"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "9LIVES", "type": "bearer_token", "token": "t"}, "is not a credential id"),
        ({"id": "A", "type": "bearer_token"}, "needs token"),
        ({"id": "A", "type": "bearer_token", "token": "t", "value": "v"}, "takes no value"),
        ({**VARIABLE, "injection_location": "body"}, "bodies"),
        ({**VARIABLE, "injection_location": []}, "at least one"),
        ({**VARIABLE, "injection_location": "header", "trusted_domains": ["a b"]}, "not a domain"),
        ({"id": "A", "type": "kerberos", "token": "t"}, "type"),
    ],
)
def test_a_bad_request_says_what_is_wrong(body, message):
    with pytest.raises(ValidationError, match=message):
        CreateCredentialRequest.from_wire(body)


def test_an_update_takes_any_field_of_its_type_and_none_required():
    update = UpdateCredentialRequest.from_wire({"type": "bearer_token", "header_name": "X-Key"})
    assert (update.secrets(), update.config()) == ({}, {"header_name": "X-Key"})


def test_a_stored_credential_keeps_its_settings_in_the_open_and_its_values_sealed():
    stored = StoredCredential(id="API_TOKEN", type="bearer_token", config={}, sealed="c2VhbGVk")
    secret = stored.secret("tenant-a")
    assert secret["metadata"]["name"] == secret_name("API_TOKEN")
    assert StoredCredential.from_secret(secret) == stored
    assert set(stored.view()) == {"id", "type", "status"}
    assert secret_name("API_TOKEN") != secret_name("api_token")  # ids differ by case
