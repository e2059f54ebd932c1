"""Per-run tokens: the only credential a sandbox's agent container holds.

An HS256 JWT bound to one interaction (namespace, name, uid) and an expiry. It lets the holder
call models through the gateway's model proxy and post events for that interaction, nothing
more; provider keys never leave the operator and the gateway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

AUDIENCE = "tether-run"
ISSUER = "tether-operator"


class InvalidRunToken(Exception):
    """The token is malformed, forged, expired, or not a run token."""


@dataclass(frozen=True)
class RunClaims:
    namespace: str
    name: str
    uid: str
    expires_at: int
    model: str | None = None
    """The only model this run may call."""
    budget: int | None = None
    """Total tokens the run may spend (None: unbounded)."""


def issue(
    key: bytes,
    namespace: str,
    name: str,
    uid: str,
    ttl_seconds: int,
    model: str | None = None,
    budget: int | None = None,
) -> str:
    now = int(time.time())
    return jwt.encode(
        {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": uid,
            "ns": namespace,
            "ix": name,
            "model": model,
            "budget": budget,
            "iat": now,
            "exp": now + ttl_seconds,
        },
        key,
        algorithm="HS256",
    )


def verify(key: bytes, token: str) -> RunClaims:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "aud", "iss"]},
        )
    except jwt.PyJWTError as error:
        raise InvalidRunToken(str(error)) from error
    return RunClaims(
        claims["ns"],
        claims["ix"],
        claims["sub"],
        claims["exp"],
        model=claims.get("model"),
        budget=claims.get("budget"),
    )
