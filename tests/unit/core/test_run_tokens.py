"""A run token opens exactly one interaction's door, and only until it expires."""

import time

import jwt
import pytest

from tether import run_tokens

KEY = b"k" * 32


def test_a_token_carries_its_interaction():
    token = run_tokens.issue(KEY, "tenant-a", "ix-1", "uid-1", ttl_seconds=60)
    claims = run_tokens.verify(KEY, token)
    assert (claims.namespace, claims.name, claims.uid) == ("tenant-a", "ix-1", "uid-1")
    assert claims.expires_at > time.time()


def test_a_token_binds_the_model_and_the_budget():
    token = run_tokens.issue(KEY, "t", "ix-1", "u", 60, model="scripted", budget=500)
    claims = run_tokens.verify(KEY, token)
    assert (claims.model, claims.budget) == ("scripted", 500)


def test_a_token_signed_with_another_key_is_refused():
    token = run_tokens.issue(b"x" * 32, "tenant-a", "ix-1", "uid-1", ttl_seconds=60)
    with pytest.raises(run_tokens.InvalidRunToken, match="Signature"):
        run_tokens.verify(KEY, token)


def test_an_expired_token_is_refused():
    token = run_tokens.issue(KEY, "tenant-a", "ix-1", "uid-1", ttl_seconds=-1)
    with pytest.raises(run_tokens.InvalidRunToken, match="expired"):
        run_tokens.verify(KEY, token)


def test_a_token_for_another_purpose_is_refused():
    other = jwt.encode({"sub": "uid-1", "exp": time.time() + 60}, KEY, algorithm="HS256")
    with pytest.raises(run_tokens.InvalidRunToken):
        run_tokens.verify(KEY, other)


def test_an_unsigned_token_is_refused():
    forged = jwt.encode(
        {
            "iss": "tether-operator",
            "aud": "tether-run",
            "sub": "u",
            "ns": "n",
            "ix": "i",
            "exp": time.time() + 60,
        },
        None,
        algorithm="none",
    )
    with pytest.raises(run_tokens.InvalidRunToken):
        run_tokens.verify(KEY, forged)
