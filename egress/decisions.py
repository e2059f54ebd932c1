"""Whether a run may reach a host, and at which address. Pure: the gate does the I/O.

A name passes when the run's allowlist has an entry for it. The address it resolves to must
then be a public one: a private, loopback or link-local address (the cluster's services, the
node, a cloud's metadata server) is refused, unless the name is one of the platform's named
destinations (TETHER_EGRESS_HOSTS), which is how a platform lets sandboxes reach an internal
service on purpose.
"""

from __future__ import annotations

import ipaddress

from tether.egress.clients import Client


def refusal(client: Client | None, host: str) -> str | None:
    """Why `client` may not reach `host`, or None when its allowlist lets it through."""
    if client is None:
        return "this address is not a sandbox of this platform"
    if not client.allowlist.domains():
        return "this run's network is disabled"
    if client.allowlist.entry_for(host) is None:
        return f"{host} is not on this run's network allowlist"
    return None


def address_refusal(host: str, address: str, named: dict[str, str]) -> str | None:
    """Why `host` may not be reached at `address`, or None when it may."""
    if host in named:
        return None
    if not ipaddress.ip_address(address.removeprefix("::ffff:")).is_global:
        return (
            f"{host} is at {address}, a private address; sandboxes reach only public addresses "
            "and the platform's named destinations"
        )
    return None
