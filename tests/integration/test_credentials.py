"""Credentials through the SDK's `client.credentials`, and put into a run's requests by the
egress proxy on the real node: the API gets its token, the run's code never sees it."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json

import httpx
import kubernetes
import pytest
from google.genai._interactions_errors import APIStatusError

from tests.integration.test_agent_runs import agent_run, call
from tests.integration.test_sdk_interactions import api_error
from tether.api.credential import secret_name
from tether.dev.fakes.site import Site
from tether.dev.worker.configs import HOST_ALIAS

A, B = f"a.{HOST_ALIAS}", f"b.{HOST_ALIAS}"
TOKEN = "tok-3f9a1c7e5b2d4068"
OAUTH = {"client_id": "tether-tests", "client_secret": "cs-77e1", "refresh_token": "rt-5c2a"}


@pytest.fixture(scope="module")
def api(stack):
    """An HTTPS API under two names that wants `Bearer TOKEN`, with a certificate from the
    authority the stack's egress proxy trusts (as a public API's would be); POST /token is an
    OAuth2 token endpoint whose refresh-token grant hands out TOKEN."""
    with Site(hosts=(A, B), tls=True, ca=stack.outside_ca, token=TOKEN, oauth=OAUTH) as site:
        yield site


@pytest.fixture
def credentials(client):
    made: list[str] = []

    def create(**fields):
        created = client.credentials.create(**fields)
        made.append(created.id)
        return created

    yield create
    for credential in made:
        with contextlib.suppress(APIStatusError):
            client.credentials.delete(credential)


def code_that_looks_for(secret: str, commands: str) -> str:
    """Bash: run `commands`, then look for `secret` in the process environments, /proc, the
    files the run can read and what the commands printed. The secret is in the code reversed,
    so the code itself does not hold it."""
    look = f"""
import os, pathlib
secret = {secret[::-1]!r}[::-1]
found = []
for name, value in os.environ.items():
    if secret in value:
        found.append("env:" + name)
for top in ("/proc", "/workspace", "/tmp", "/etc", "/run", "/var/run"):
    for path in pathlib.Path(top).rglob("*"):
        if top == "/proc" and path.name not in ("environ", "cmdline"):
            continue
        try:
            if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes():
                found.append(str(path))
        except OSError:
            pass
print("leaks=" + (",".join(found) or "none"))
"""
    return f"{commands} > /tmp/out.txt 2>&1; cat /tmp/out.txt\npython3 - <<'EOF'\n{look}EOF"


def output(done) -> str:
    [result] = [s.result for s in done.steps if s.type == "code_execution_result"]
    return result


def allow(*entries: dict) -> dict:
    return {"network": {"allowlist": list(entries)}}


def test_credentials_are_created_listed_updated_and_deleted_and_never_shown(
    stack, client, api_key, credentials
):
    made = credentials(id="API_TOKEN", type="bearer_token", token=TOKEN)
    assert (made.id, made.type, made.status) == ("API_TOKEN", "bearer_token", "active")
    assert made.create_time is not None
    raw = httpx.get(
        f"{stack.url}/v1beta/credentials/API_TOKEN",
        headers={"x-goog-api-key": api_key},
    )
    assert TOKEN not in raw.text and set(raw.json()) == {
        "id",
        "type",
        "status",
        "create_time",
        "update_time",
    }
    assert [c.id for c in client.credentials.list().credentials] == ["API_TOKEN"]
    updated = client.credentials.update("API_TOKEN", type="bearer_token", header_name="X-Token")
    assert updated.update_time >= made.update_time
    # kept in a Secret of the tenant's, sealed by the proxy: nobody else can read the value
    core = kubernetes.client.CoreV1Api(stack.control_plane.api_client())
    secret = core.read_namespaced_secret(secret_name("API_TOKEN"), "tenant-a")
    kept = json.dumps(secret.to_dict(), default=str)
    assert TOKEN not in kept and TOKEN not in base64.b64decode(secret.data["sealed"]).decode(
        errors="replace"
    )
    client.credentials.delete("API_TOKEN")
    assert api_error(lambda: client.credentials.get("API_TOKEN")).status_code == 404


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"id": "bad-id", "type": "bearer_token", "token": "x"}, "id"),
        ({"id": "NO_TOKEN", "type": "bearer_token"}, "needs token"),
        ({"id": "MIXED", "type": "bearer_token", "token": "x", "value": "y"}, "takes no value"),
        (
            {
                "id": "IN_BODY",
                "type": "environment_variable",
                "value": "v",
                "injection_location": "body",
            },
            "injection_location",
        ),
        ({"id": "WHERE", "type": "environment_variable", "value": "v"}, "injection_location"),
    ],
)
def test_a_bad_credential_is_a_400_naming_what_is_wrong(stack, api_key, body, named):
    response = httpx.post(
        f"{stack.url}/v1beta/credentials", json=body, headers={"x-goog-api-key": api_key}
    )
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]["message"]


def test_a_run_calls_a_token_protected_api_and_never_holds_the_token(
    client, script, api, credentials
):
    credentials(id="API_TOKEN", type="bearer_token", token=TOKEN)
    commands = (
        f"curl -s -w ' a=%{{http_code}}\\n' {api.url(A, '/data')}; "
        # -k: B's tunnel is the sandbox's own TLS, to a certificate it has no reason to trust
        f"curl -sk -o /dev/null -w 'b=%{{http_code}}\\n' {api.url(B, '/other')}"
    )
    code = code_that_looks_for(TOKEN, commands)
    model = script("cred-bearer", [call("run_code", language="bash", code=code), {"text": "ok"}])
    before = len(api.requests)
    done = agent_run(
        client,
        model,
        environment=allow({"domain": A, "credential": "API_TOKEN"}, {"domain": B}),
    )
    seen = output(done)
    assert " a=200" in seen and "b=401" in seen  # B is allowed, but carries no credential
    assert '"authorization": "Bearer [credential]"' in seen  # the API's echo of it, scrubbed
    assert "leaks=none" in seen, seen
    arrived = {r["path"]: r["authorization"] for r in api.requests[before:]}
    assert arrived == {"/data": f"Bearer {TOKEN}", "/other": ""}


def test_an_environment_variable_credential_is_a_placeholder_the_proxy_fills(
    client, script, api, credentials
):
    credentials(
        id="API_KEY",
        type="environment_variable",
        value=TOKEN,
        injection_location=["header", "query"],
        trusted_domains=[f"*.{HOST_ALIAS}"],
    )
    commands = (
        f'echo "sees=$API_KEY"; '
        f'curl -s -o /dev/null -H "Authorization: Bearer $API_KEY" {api.url(A, "/header")}; '
        f'curl -s -o /dev/null "{api.url(A, "/query")}?key=$API_KEY"'
    )
    code = code_that_looks_for(TOKEN, commands)
    model = script("cred-env", [call("run_code", language="bash", code=code), {"text": "ok"}])
    before = len(api.requests)
    done = agent_run(client, model, environment=allow({"domain": A, "credential": "API_KEY"}))
    seen = output(done)
    assert "sees=tether-credential-API_KEY" in seen and "leaks=none" in seen, seen
    arrived = api.requests[before:]
    assert arrived[0]["authorization"] == f"Bearer {TOKEN}"
    assert arrived[1]["path"] == f"/query?key={TOKEN}"


def test_an_oauth2_credential_is_exchanged_at_its_token_server(client, script, api, credentials):
    credentials(id="OAUTH_API", type="oauth2", token_url=api.url(A, "/token"), **OAUTH)
    code = code_that_looks_for(
        TOKEN, f"curl -s -o /dev/null -w 'a=%{{http_code}}\\n' {api.url(A, '/o')}"
    )
    model = script("cred-oauth", [call("run_code", language="bash", code=code), {"text": "ok"}])
    done = agent_run(client, model, environment=allow({"domain": A, "credential": "OAUTH_API"}))
    seen = output(done)
    assert "a=200" in seen and "leaks=none" in seen, seen
    grants = [r for r in api.requests if r["path"] == "/token"]
    assert grants and grants[-1]["refresh_token"] == OAUTH["refresh_token"]


def test_two_concurrent_runs_carry_only_their_own_credentials(client, script, api, credentials):
    credentials(id="ONE", type="bearer_token", token="tok-one", header_name="X-One", prefix="")
    credentials(id="TWO", type="bearer_token", token="tok-two", header_name="X-Two", prefix="")
    models = {
        name: script(
            f"cred-{name.lower()}",
            [
                call("run_code", language="bash", code=f"curl -s {api.url(A, '/' + name)}"),
                {"text": "ok"},
            ],
        )
        for name in ("ONE", "TWO")
    }
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {
            name: pool.submit(
                agent_run, client, model, environment=allow({"domain": A, "credential": name})
            )
            for name, model in models.items()
        }
        done = {name: future.result() for name, future in futures.items()}
    assert all(d.status == "completed" for d in done.values())
    carried = {
        r["path"]: {k: v for k, v in r["headers"].items() if k in ("X-One", "X-Two")}
        for r in api.requests
        if r["path"] in ("/ONE", "/TWO")
    }
    assert carried == {"/ONE": {"X-One": "tok-one"}, "/TWO": {"X-Two": "tok-two"}}


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"domain": A, "credential": "NOBODY"}, "no credential 'NOBODY'"),
        ({"domain": "api.example.com", "credential": "NARROW"}, "is trusted for"),
    ],
)
def test_a_credential_the_allowlist_cannot_use_is_a_400_naming_the_entry(
    stack, api_key, credentials, entry, named
):
    credentials(
        id="NARROW",
        type="environment_variable",
        value="v",
        injection_location="header",
        trusted_domains=[A],
    )
    body = {"agent": "eva", "input": "go", "environment": allow(entry), "background": True}
    response = httpx.post(
        f"{stack.url}/v1beta/interactions", json=body, headers={"x-goog-api-key": api_key}
    )
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "environment.network.allowlist[0].credential" in message and named in message
