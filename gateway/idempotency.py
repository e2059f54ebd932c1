"""Idempotent creates, a Tether addition: an `Idempotency-Key` header names the interaction.

The interaction's id is derived from the tenant and the key, so a retried create (after a
network error, a 503, a gateway crash) finds the interaction the first attempt made, through
the API server's own uniqueness of names: nothing else has to be remembered, and no model runs
twice. The request's digest is kept on the interaction, so a key reused for a different request
is refused instead of answered with the wrong interaction.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tether.api import GROUP

from .errors import ApiError

HEADER = "Idempotency-Key"
REQUEST_ANNOTATION = f"{GROUP}/request-digest"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class Fingerprint:
    canonical: bytes
    """The spec as stored, in one canonical spelling (its size is what etcd will hold)."""
    digest: str


def fingerprint(spec: dict[str, Any]) -> Fingerprint:
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return Fingerprint(canonical, hashlib.sha256(canonical).hexdigest())


def key_of(headers: Mapping[str, str]) -> str | None:
    key = headers.get(HEADER)
    if key is None:
        return None
    if not _KEY.match(key):
        raise ApiError(400, f"{HEADER} must be 1 to 255 printable ASCII characters without spaces")
    return key


def interaction_id(namespace: str, key: str) -> str:
    digest = hashlib.sha256(f"{namespace}\0{key}".encode()).hexdigest()
    return f"ix-{digest[:20]}"
