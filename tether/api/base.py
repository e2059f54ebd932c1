"""One pydantic model, two spellings: snake_case on the HTTP wire, camelCase in custom resources."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# Marks a field whose value is user data of any JSON shape (JSON schemas, tool arguments,
# free-form input). The CRD generator turns it into x-kubernetes-preserve-unknown-fields.
FREE_FORM: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


class ApiModel(BaseModel):
    """Base of every wire object: field names are snake_case, aliases camelCase."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        """Validate an HTTP body (snake_case)."""
        return cls.model_validate(data, by_alias=False, by_name=True)

    @classmethod
    def from_kube(cls, data: Any) -> Self:
        """Validate a custom resource's spec or status (camelCase)."""
        return cls.model_validate(data, by_alias=True, by_name=False)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=False, exclude_none=True)

    def to_kube(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class OpenModel(ApiModel):
    """A wire object whose undeclared fields pass through untouched (contents, steps, tools)."""

    model_config = ConfigDict(extra="allow")
