"""What the egress proxy lets through, from its pure parts: allowlist patterns, the private
address rule, and which pods are sandboxes."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tether.api.common import AllowlistEntry, EgressAllowlist
from tether.api.internal import EGRESS_ANNOTATION, INTERACTION_LABEL, SANDBOX_LABEL
from tether.egress.clients import Client, client_of
from tether.egress.decisions import address_refusal, refusal


def client(*domains: str) -> Client:
    allowlist = EgressAllowlist(allowlist=list(domains))
    return Client("tenant-a", "ix-1", "uid-1", "pod-1", allowlist)


@pytest.mark.parametrize(
    ("pattern", "host", "passes"),
    [
        ("api.example.com", "api.example.com", True),
        ("api.example.com", "API.Example.com.", True),
        ("api.example.com", "example.com", False),
        ("api.example.com", "api.example.com.evil.test", False),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),  # a wildcard is its subdomains
        ("*.example.com", "badexample.com", False),
        ("*", "anything.test", True),
        ("203.0.113.7", "203.0.113.7", True),
        ("198.51.100.0/24", "198.51.100.9", True),
        ("198.51.100.0/24", "198.51.101.9", False),
        ("198.51.100.0/24", "example.com", False),
    ],
)
def test_a_pattern_matches_its_hosts_and_no_others(pattern, host, passes):
    assert AllowlistEntry(domain=pattern).matches(host) is passes


@pytest.mark.parametrize(
    "pattern", ["exa mple.com", "*example.com", "api.*.example.com", "-bad.test", "a..b", "*.*"]
)
def test_a_malformed_pattern_is_refused_naming_it(pattern):
    with pytest.raises(ValidationError, match="is not a domain pattern"):
        EgressAllowlist.model_validate({"allowlist": [pattern]})


def test_refusals_name_what_is_wrong():
    assert refusal(None, "a.test") == "this address is not a sandbox of this platform"
    assert refusal(client(), "a.test") == "this run's network is disabled"
    assert refusal(client("b.test"), "a.test") == "a.test is not on this run's network allowlist"
    assert refusal(client("*.test"), "a.test") is None


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.0.0.1", "10.244.0.7", "169.254.169.254", "::1", "::ffff:10.0.0.1"]
)
def test_private_addresses_are_refused_unless_the_platform_names_the_host(address):
    assert "a private address" in address_refusal("api.test", address, {})
    assert address_refusal("host.internal", address, {"host.internal": ""}) is None


def test_a_public_address_passes():
    assert address_refusal("api.test", "8.8.8.8", {}) is None


def pod(phase="Running", ip="10.244.0.9", annotation=None, owner=True) -> dict:
    annotations = {EGRESS_ANNOTATION: annotation} if annotation else {}
    owners = [{"kind": "Interaction", "uid": "ix-uid", "name": "ix-1"}] if owner else []
    return {
        "metadata": {
            "namespace": "tenant-a",
            "uid": "pod-uid",
            "labels": {SANDBOX_LABEL: "sbx-ix-uid", INTERACTION_LABEL: "ix-1"},
            "annotations": annotations,
            "ownerReferences": owners,
        },
        "status": {"phase": phase, "podIP": ip},
    }


def test_a_live_sandbox_pod_is_a_client_with_its_allowlist():
    address, found = client_of(pod(annotation=json.dumps({"allowlist": [{"domain": "a.test"}]})))
    assert address == "10.244.0.9"
    assert (found.run, found.uid, found.allowlist.domains()) == (
        "tenant-a/ix-1",
        "ix-uid",
        ["a.test"],
    )
    assert client_of(pod())[1].allowlist.domains() == []  # no annotation: no egress


@pytest.mark.parametrize(
    "other", [pod(phase="Succeeded"), pod(phase="Failed"), pod(ip=None), pod(owner=False)]
)
def test_a_finished_or_foreign_pod_is_nobody(other):
    assert client_of(other) is None
