"""Egress at the edge, on the real node: a sandbox reaches the outside only through the egress
proxy, which enforces its run's allowlist by host name; everything else is closed by the
NetworkPolicy, whatever the code in the sandbox tries."""

from __future__ import annotations

import concurrent.futures
import json
import re

import httpx
import kubernetes
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_agent_runs import agent_run, call
from tether.dev.fakes.site import Site
from tether.dev.worker.configs import HOST_ALIAS, NodeNetwork

A, B = f"a.{HOST_ALIAS}", f"b.{HOST_ALIAS}"


@pytest.fixture(scope="module")
def web():
    """The same sites under two names: http and https (a certificate for both)."""
    with Site(hosts=(A, B)) as plain, Site(hosts=(A, B), tls=True) as secure:
        yield plain, secure


def probe(web, *extra: str) -> str:
    """Bash that prints one `name=status` line per attempt: curl through the proxy (it reads
    HTTPS_PROXY), and a raw TCP connection that ignores it."""
    plain, secure = web
    lines = [
        f"curl -s -o /dev/null -w 'http_{n}=%{{http_code}}\\n' {plain.url(h, f'/{n}')}"
        for n, h in (("a", A), ("b", B))
    ]
    lines += [  # -k: the tunnel is checked by name; the certificate is the test site's own
        f"curl -sk -o /dev/null -w 'https_{n}=%{{http_code}}/%{{http_connect}}\\n' "
        f"{secure.url(h, f'/{n}')}"
        for n, h in (("a", A), ("b", B))
    ]
    host_ip = NodeNetwork().host_alias_ip
    raw = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({host_ip!r}, {plain.port}), timeout=3).close()\n"
        "    print('raw=connected')\n"
        "except OSError as error:\n"
        "    print('raw=refused', type(error).__name__)\n"
    )
    lines.append(f"python3 - <<'EOF'\n{raw}EOF")
    return "\n".join([*lines, *extra])


def allow(*domains: str) -> dict:
    return {"network": {"allowlist": [{"domain": d} for d in domains]}}


def results(done) -> dict[str, str]:
    [output] = [s.result for s in done.steps if s.type == "code_execution_result"]
    return dict(re.findall(r"^(\w+)=(\S+)", output, re.M))


def blocked(done) -> list[dict]:
    """The run's network_blocked steps: the SDK keeps a step type it does not know as is."""
    raw = [s.raw for s in done.steps if getattr(s, "is_unknown", False)]
    return [r for r in raw if r["type"] == "network_blocked"]


def fronted(web) -> str:
    """Bash: a tunnel to A whose TLS names B (domain fronting), asking B for /front."""
    _, secure = web
    code = (
        "import os, socket, ssl, urllib.parse\n"
        "proxy = urllib.parse.urlsplit(os.environ['HTTPS_PROXY'])\n"
        "s = socket.create_connection((proxy.hostname, proxy.port), timeout=10)\n"
        f"target = b'{A}:{secure.port}'\n"
        "s.sendall(b'CONNECT ' + target + b' HTTP/1.1\\r\\nHost: ' + target + b'\\r\\n\\r\\n')\n"
        "s.recv(4096)\n"
        "context = ssl.create_default_context()\n"
        "context.check_hostname, context.verify_mode = False, ssl.CERT_NONE\n"
        f"t = context.wrap_socket(s, server_hostname={B!r})\n"
        f"t.sendall(b'GET /front HTTP/1.1\\r\\nHost: {B}\\r\\nConnection: close\\r\\n\\r\\n')\n"
        "print('fronted=' + t.recv(4096).split()[1].decode())\n"
    )
    return f"python3 - <<'EOF'\n{code}EOF"


def test_a_run_reaches_its_allowlisted_host_and_nothing_else(stack, client, script, web):
    plain, secure = web
    code = probe(web, fronted(web))
    model = script("egress-probe", [call("run_code", language="bash", code=code), {"text": "ok"}])
    before = len(plain.requests) + len(secure.requests)
    done = agent_run(client, model, environment=allow(A))
    assert done.status == "completed"
    seen = results(done)
    assert seen["http_a"] == "200" and seen["http_b"] == "403"
    assert seen["https_a"] == "200/200"  # the tunnel opened, TLS end to end
    assert seen["https_b"] == "000/403"  # the proxy refused the CONNECT
    assert seen["raw"] == "refused"  # the NetworkPolicy closes every address but the proxy's
    assert seen["fronted"] == "403"  # a tunnel to A whose TLS names B: refused by its SNI
    arrived = (plain.requests + secure.requests)[before:]
    assert sorted(r["path"] for r in arrived) == ["/a", "/a"]
    entries = blocked(done)
    assert {(e["host"], e["method"]) for e in entries} == {(B, "GET"), (B, "CONNECT")}
    assert all(e["reason"] == f"{B} is not on this run's network allowlist" for e in entries)


def test_a_run_with_its_network_disabled_reaches_nothing(client, script, web):
    model = script(
        "egress-closed", [call("run_code", language="bash", code=probe(web)), {"text": "done"}]
    )
    done = agent_run(client, model, environment={"network": "disabled"})
    seen = results(done)
    assert (seen["http_a"], seen["https_a"], seen["raw"]) == ("403", "000/403", "refused")
    assert {e["reason"] for e in blocked(done)} == {"this run's network is disabled"}


def test_private_addresses_stay_closed_even_to_a_wildcard(client, script, web):
    """`*` reaches the platform's named destinations, but no other private address: not the
    metadata address, not the API server's Service."""
    code = probe(
        web,
        "curl -s -o /dev/null -w 'metadata=%{http_code}\\n' http://169.254.169.254/",
        "curl -sk -o /dev/null -w 'api=%{http_connect}\\n' https://10.0.0.1/",
    )
    model = script("egress-wild", [call("run_code", language="bash", code=code), {"text": "ok"}])
    done = agent_run(client, model, environment=allow("*"))
    seen = results(done)
    assert (seen["http_a"], seen["http_b"], seen["https_b"]) == ("200", "200", "200/200")
    assert (seen["metadata"], seen["api"]) == ("403", "403")
    entries = blocked(done)
    assert {e["host"] for e in entries} == {"169.254.169.254", "10.0.0.1"}
    assert all("a private address" in e["reason"] for e in entries)


def test_two_concurrent_runs_each_get_only_their_own_allowlist(client, script, web):
    code = probe(web)
    one = script("egress-one", [call("run_code", language="bash", code=code), {"text": "1"}])
    two = script("egress-two", [call("run_code", language="bash", code=code), {"text": "2"}])
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(agent_run, client, one, environment=allow(A))
        second = pool.submit(agent_run, client, two, environment=allow(f"*.{HOST_ALIAS}"))
        first, second = first.result(), second.result()
    assert (results(first)["http_a"], results(first)["http_b"]) == ("200", "403")
    assert (results(second)["http_a"], results(second)["http_b"]) == ("200", "200")
    assert {e["host"] for e in blocked(first)} == {B}
    assert blocked(second) == []


def test_the_proxy_audits_and_counts_what_sandboxes_reached(stack, client, script, web):
    plain, secure = web
    padded = "/audited?pad=" + "x" * 20_000  # the site echoes the path: 20 kB each way
    code = (
        f"curl -s -o /dev/null {plain.url(A, '/audited')}; curl -s -o /dev/null {plain.url(B)}; "
        f"curl -sk -o /dev/null '{secure.url(A, padded)}'"
    )
    model = script("egress-audit", [call("run_code", language="bash", code=code), {"text": "ok"}])
    done = agent_run(client, model, environment=allow(A))
    assert done.status == "completed"
    log = (stack.logs / "egress.log").read_text().splitlines()
    run = f"tenant-a/{done.id}"
    records = [json.loads(line) for line in log if f'"run": "{run}"' in line]
    assert sorted((r["host"], r["port"], r["method"], r["status"]) for r in records) == sorted(
        [(A, plain.port, "GET", 200), (B, plain.port, "GET", 403), (A, secure.port, "CONNECT", 200)]
    )
    assert all("credential" in r for r in records)
    # a tunnel that stays the sandbox's own TLS is one line when it closes, with its bytes
    [tunnel] = [r for r in records if r["method"] == "CONNECT"]
    assert tunnel["bytes_out"] > 20_000 and tunnel["bytes_in"] > 20_000
    [http_get] = [r for r in records if r["status"] == 200 and r["method"] == "GET"]
    assert http_get["bytes_in"] > 0
    metrics = text_string_to_metric_families(httpx.get(stack.egress_metrics_url).text)
    counted = {
        (s.labels["kind"], s.labels["decision"])
        for family in metrics
        if family.name == "tether_egress_requests"
        for s in family.samples
        if s.name.endswith("_total") and s.labels["namespace"] == "tenant-a" and s.value > 0
    }
    assert {("http", "allowed"), ("http", "refused")} <= counted


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"domain": "api.*.example.com"}, "allowlist[0].domain"),
        ({"domain": "exa mple.com"}, "allowlist[0].domain"),
        ({"domain": "api.example.com", "credential": "github"}, "allowlist[0].credential"),
    ],
)
@pytest.mark.parametrize("where", ["interactions", "environments"])
def test_a_bad_allowlist_entry_is_a_400_naming_it_and_creates_nothing(
    stack, api_key, where, entry, named
):
    network = {"allowlist": [{"domain": "ok.example.com"}, entry]}
    named = named.replace("[0]", "[1]")
    body = (
        {"agent": "eva", "input": "go", "environment": {"network": network}, "background": True}
        if where == "interactions"
        else {"network": network}
    )
    custom = kubernetes.client.CustomObjectsApi(stack.control_plane.api_client())

    def names() -> set[str]:
        listed = custom.list_namespaced_custom_object("tether.dev", "v1alpha1", "tenant-a", where)
        return {o["metadata"]["name"] for o in listed["items"]}

    before = names()
    response = httpx.post(
        f"{stack.url}/v1beta/{where}", json=body, headers={"x-goog-api-key": api_key}, timeout=30
    )
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]["message"]
    assert names() == before
