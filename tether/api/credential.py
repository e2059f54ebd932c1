"""Credentials: secrets a run's requests carry without the run ever holding them. The egress
proxy puts them into requests to the domains an allowlist entry names with `credential`.

What is open (the kind, where it goes, how it is put in) is kept as is; the secret values are
sealed by the egress proxy, with a key only it holds, before anything is stored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tether.api.base import ApiModel
from tether.api.common import AllowlistEntry

CREDENTIAL_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
"""A credential's id: also the name of the environment variable a run sees for it."""
CredentialType = Literal["bearer_token", "environment_variable", "oauth2"]
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "bearer_token": ("token",),
    "environment_variable": ("value",),
    "oauth2": ("client_secret", "refresh_token"),
}
"""The write-only fields of each type: sealed, never returned."""
OPEN_FIELDS: dict[str, tuple[str, ...]] = {
    "bearer_token": ("header_name", "prefix"),
    "environment_variable": ("injection_location", "trusted_domains"),
    "oauth2": ("client_id", "token_url", "scopes"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "bearer_token": ("token",),
    "environment_variable": ("value", "injection_location"),
    "oauth2": ("client_id", "client_secret", "refresh_token", "token_url"),
}
Location = Literal["header", "query", "body"]


class CredentialFields(ApiModel):
    """Every field any type of credential takes; which of them a type takes is checked below."""

    type: CredentialType
    token: str | None = Field(default=None, min_length=1)
    header_name: str | None = Field(default=None, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
    prefix: str | None = None
    value: str | None = Field(default=None, min_length=1)
    injection_location: list[Location] | None = None
    trusted_domains: list[str] | None = None
    client_id: str | None = Field(default=None, min_length=1)
    client_secret: str | None = Field(default=None, min_length=1)
    refresh_token: str | None = Field(default=None, min_length=1)
    token_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    scopes: list[str] | None = None

    @field_validator("injection_location", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("injection_location")
    @classmethod
    def _header_or_query(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and "body" in value:
            raise ValueError(
                "the egress proxy puts a credential into a header or the query string; "
                "injection into request bodies is not supported"
            )
        if value is not None and not value:
            raise ValueError("name at least one location: header or query")
        return value

    @field_validator("trusted_domains")
    @classmethod
    def _domain_patterns(cls, value: list[str] | None) -> list[str] | None:
        return value and [AllowlistEntry(domain=d).domain for d in value]

    @model_validator(mode="after")
    def _fields_of_its_type(self) -> CredentialFields:
        given = {name for name in type(self).model_fields if getattr(self, name) is not None}
        own = {"id", "type", *SECRET_FIELDS[self.type], *OPEN_FIELDS[self.type]}
        if other := sorted(given - own):
            raise ValueError(f"a credential of type {self.type} takes no {', '.join(other)}")
        return self

    def secrets(self) -> dict[str, str]:
        return {
            name: getattr(self, name) for name in SECRET_FIELDS[self.type] if getattr(self, name)
        }

    def config(self) -> dict[str, Any]:
        """The open settings, as stored beside the sealed values."""
        return {
            name: getattr(self, name)
            for name in OPEN_FIELDS[self.type]
            if getattr(self, name) is not None
        }


class CreateCredentialRequest(CredentialFields):
    id: str

    @field_validator("id")
    @classmethod
    def _an_id(cls, value: str) -> str:
        if not CREDENTIAL_ID.match(value):
            raise ValueError(
                f"{value!r} is not a credential id: a letter or _ then letters, digits or _, at "
                "most 63 (it is also the environment variable a run sees, e.g. GITHUB_TOKEN)"
            )
        return value

    @model_validator(mode="after")
    def _required(self) -> CreateCredentialRequest:
        if missing := [name for name in REQUIRED[self.type] if getattr(self, name) is None]:
            raise ValueError(f"a credential of type {self.type} needs {', '.join(missing)}")
        return self


class UpdateCredentialRequest(CredentialFields):
    """The fields to change; `type` must be the credential's own."""


class CredentialObject(ApiModel):
    """A credential as the API shows it: never a secret value."""

    id: str
    type: CredentialType
    status: Literal["active", "revoked"] = "active"
    create_time: str | None = None
    update_time: str | None = None


class CredentialList(ApiModel):
    credentials: list[CredentialObject] = Field(default_factory=list)
    next_page_token: str | None = None


CREDENTIAL_LABEL = "tether.dev/credential"
"""On a credential's Secret: its id."""
CREDENTIAL_ANNOTATION = "tether.dev/credential"
"""On a credential's Secret: its type, its open settings and its times (JSON)."""
SECRET_TYPE = "tether.dev/credential"


def secret_name(credential: str) -> str:
    """The Secret that holds a credential: its id, spelled as an object name, and a digest of
    the id so that ids differing only in case or _ never share one."""
    digest = hashlib.sha256(credential.encode()).hexdigest()[:8]
    return f"credential-{credential.lower().replace('_', '-').strip('-')}-{digest}"


def placeholder(credential: str) -> str:
    """What a run's environment variable `credential` holds: the egress proxy puts the value
    in its place, in requests to the credential's domains."""
    return f"tether-credential-{credential}"


class StoredCredential(ApiModel):
    """A credential's Secret, read: the open part (the annotation) and the sealed values."""

    id: str
    type: CredentialType
    config: dict[str, Any] = Field(default_factory=dict)
    create_time: str | None = None
    update_time: str | None = None
    sealed: str = ""

    @classmethod
    def from_secret(cls, secret: dict[str, Any]) -> StoredCredential:
        meta = secret["metadata"]
        open_part = json.loads((meta.get("annotations") or {})[CREDENTIAL_ANNOTATION])
        sealed = (secret.get("data") or {}).get("sealed", "")
        return cls(
            id=meta["labels"][CREDENTIAL_LABEL],
            sealed=base64.b64decode(sealed).decode() if sealed else "",
            **open_part,
        )

    def view(self) -> dict[str, Any]:
        return CredentialObject(
            id=self.id, type=self.type, create_time=self.create_time, update_time=self.update_time
        ).to_wire()

    def secret(self, namespace: str) -> dict[str, Any]:
        open_part = self.model_dump(mode="json", exclude={"id", "sealed"}, exclude_none=True)
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": SECRET_TYPE,
            "metadata": {
                "name": secret_name(self.id),
                "namespace": namespace,
                "labels": {CREDENTIAL_LABEL: self.id},
                "annotations": {CREDENTIAL_ANNOTATION: json.dumps(open_part)},
            },
            "data": {"sealed": base64.b64encode(self.sealed.encode()).decode()},
        }
