"""The egress proxy's key: sealed credentials open only for their tenant and id, and each run
has an authority of its own that every replica derives alike."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tether.egress import keys

ROOT = os.urandom(32)


def test_a_sealed_value_opens_only_for_its_tenant_and_credential():
    sealed = keys.seal(ROOT, "tenant-a", "API_TOKEN", {"token": "s3cret"})
    assert "s3cret" not in sealed
    assert keys.unseal(ROOT, "tenant-a", "API_TOKEN", sealed) == {"token": "s3cret"}
    for namespace, credential in [("tenant-b", "API_TOKEN"), ("tenant-a", "OTHER")]:
        with pytest.raises(keys.Unsealable):
            keys.unseal(ROOT, namespace, credential, sealed)
    with pytest.raises(keys.Unsealable):
        keys.unseal(os.urandom(32), "tenant-a", "API_TOKEN", sealed)
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(keys.Unsealable):
        keys.unseal(ROOT, "tenant-a", "API_TOKEN", tampered)


def test_each_run_has_its_own_authority_and_every_replica_derives_the_same_key():
    key, cert = keys.run_authority(ROOT, "run-1")
    keys.run_authority.cache_clear()
    again, _ = keys.run_authority(ROOT, "run-1")
    assert key.private_numbers() == again.private_numbers()
    other, _ = keys.run_authority(ROOT, "run-2")
    assert other.private_numbers() != key.private_numbers()
    assert cert.extensions.get_extension_for_class(
        __import__("cryptography").x509.BasicConstraints
    ).value.ca


def test_a_hosts_certificate_is_signed_by_its_runs_authority_only():
    leaf, _ = keys.leaf(ROOT, "run-1", "api.example.com")
    _, authority = keys.run_authority(ROOT, "run-1")
    _, stranger = keys.run_authority(ROOT, "run-2")
    leaf.verify_directly_issued_by(authority)
    with pytest.raises(Exception):  # noqa: B017 - any failure to verify
        leaf.verify_directly_issued_by(stranger)
    assert isinstance(authority.public_key(), ec.EllipticCurvePublicKey)


def test_a_short_key_is_refused():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        keys.root_key("c2hvcnQ=")
