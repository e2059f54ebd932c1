"""Persistent Environments through the SDK, on the real node: a workspace volume that runs share
one at a time, that outlives them, and that an idle expiry deletes."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time

import httpx
import kubernetes
import pytest

from tests.integration.test_agent_runs import agent_run, call
from tests.integration.test_sdk_interactions import api_error, wait_until_ended
from tether.dev.fakes.git_https import GitServer
from tether.dev.worker.configs import HOST_ALIAS
from tether.operator.sandbox_pod import volume_name

TENANT = "tenant-a"


def volume(stack, env_id: str):
    core = kubernetes.client.CoreV1Api(stack.control_plane.api_client())
    try:
        return core.read_namespaced_persistent_volume_claim(volume_name(env_id), TENANT)
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return None
        raise


def results(done) -> list[str]:
    """What each tool call of the run gave back, in order."""
    found = []
    for step in done.steps:
        if step.type == "code_execution_result":
            found.append(step.result)
        elif step.type == "function_result":
            result = step.result.model_dump()
            found.append(result.get("content", result.get("error")))
    return found


def run_in(model: str, environment, **extra) -> dict:
    """The body of an agent interaction on `model` in `environment`."""
    config = {"type": "dynamic", "model": model}
    return {
        "agent": "eva",
        "input": "go",
        "agent_config": config,
        "environment": environment,
        **extra,
    }


def http(stack, api_key: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{stack.url}/v1beta", headers={"x-goog-api-key": api_key}, timeout=30
    )


def test_an_environment_keeps_its_files_across_three_runs(stack, client, script):
    env = client.environments.create(
        sources=[{"type": "inline", "target": "README.md", "content": "seeded\n"}],
        system_instruction="Work in /workspace.",
    )
    assert (env.status, env.mode) == ("active", "on_demand")
    assert env.id.startswith("env-")
    first = script(
        "env-first",
        [
            call(
                "run_code",
                language="bash",
                code="cat README.md; echo one > log.txt; echo changed > README.md",
            ),
            {"text": "first"},
        ],
    )
    second = script(
        "env-second",
        [
            call("run_code", language="bash", code="cat README.md log.txt; echo two >> log.txt"),
            {"text": "second"},
        ],
    )
    third = script("env-third", [call("read_file", path="log.txt"), {"text": "third"}])

    done = agent_run(client, first, environment=env.id)
    assert (done.status, done.environment_id) == ("completed", env.id), done.errors
    assert results(done) == ["seeded\n"]
    # The source was written once: the second run finds the first one's change, not the seed.
    done = agent_run(client, second, environment=env.id)
    assert done.status == "completed", done.errors
    assert results(done) == ["changed\none\n"]
    done = agent_run(client, third, environment={"type": "remote", "environment_id": env.id})
    assert (done.status, done.environment_id) == ("completed", env.id), done.errors
    assert results(done) == ["one\ntwo\n"]

    got = client.environments.get(env.id)
    assert (got.status, got.file_count, got.size_bytes) == ("active", 2, len("changed\none\ntwo\n"))
    assert got.last_accessed and got.last_accessed >= got.created
    claim = volume(stack, env.id)
    assert claim is not None and claim.status.phase == "Bound"
    # A run without the environment starts from nothing, as ever.
    fresh = agent_run(client, third)
    assert fresh.environment_id is None
    assert results(fresh) == ["no file 'log.txt'"]


def test_one_run_at_a_time_in_an_environment(stack, client, api_key, script):
    env = client.environments.create()
    slow = script(
        "env-slow", [call("run_code", language="bash", code="sleep 6; echo done"), {"text": "ok"}]
    )
    started = client.interactions.create(
        agent="eva",
        input="go",
        agent_config={"type": "dynamic", "model": slow},
        environment=env.id,
        background=True,
    )
    with http(stack, api_key) as api:
        second = api.post(
            "/interactions",
            json=run_in(slow, env.id, background=True),
        )
        assert second.status_code == 409, second.text
        error = second.json()["error"]
        assert error["code"] == "environment_busy"
        assert started.id in error["message"] and env.id in error["message"]
        busy = api.delete(f"/environments/{env.id}")
        assert busy.status_code == 409 and started.id in busy.json()["error"]["message"]
        assert api.get(f"/environments/{env.id}").json()["active_interaction"] == started.id
    done = wait_until_ended(client, started.id, timeout=60)
    assert done.status == "completed", done.errors
    after = agent_run(client, slow, environment=env.id)
    assert after.status == "completed", after.errors
    client.environments.delete(env.id)
    assert api_error(lambda: client.environments.get(env.id)).status_code == 404


def test_a_claim_whose_run_is_gone_or_ended_holds_nothing(stack, client, script):
    """A gateway that died between claiming and creating, or an operator that died before
    giving the environment back, leaves a claim that the next run takes over."""
    env = client.environments.create()
    model = script("env-quick", [{"text": "quick"}])
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()
    for holder in ("ix-neverwascreated", agent_run(client, model).id):
        stale = {"activeInteraction": holder, "claimed": long_ago.replace("+00:00", "Z")}
        custom = kubernetes.client.CustomObjectsApi(stack.control_plane.api_client())
        custom.patch_namespaced_custom_object_status(
            "tether.dev", "v1alpha1", TENANT, "environments", env.id, {"status": stale}
        )
        done = agent_run(client, model, environment=env.id)
        assert done.status == "completed", done.errors


def test_an_unused_environment_expires_and_its_volume_goes(stack, client, api_key, script):
    env = client.environments.create(extra_body={"idle_timeout_seconds": 4})
    model = script("env-touch", [call("write_file", path="a.txt", content="x"), {"text": "ok"}])
    done = agent_run(client, model, environment=env.id)
    assert done.status == "completed", done.errors
    assert volume(stack, env.id) is not None
    deadline = time.monotonic() + 30
    while (got := client.environments.get(env.id)).status != "expired":
        assert time.monotonic() < deadline, f"still {got.status}"
        time.sleep(0.5)
    assert (got.file_count, got.size_bytes) == (0, 0)
    while volume(stack, env.id) is not None:
        assert time.monotonic() < deadline, "the volume outlived its environment"
        time.sleep(0.5)
    with http(stack, api_key) as api:
        refused = api.post(
            "/interactions",
            json=run_in(model, env.id),
        )
    assert refused.status_code == 409, refused.text
    assert "expired" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ("env-doesnotexist", "environment 'env-doesnotexist' not found"),
        ("../etc", 'neither "remote" nor an environment id'),
        ({"environment_id": "Bad_Id"}, 'neither "remote" nor an environment id'),
    ],
)
def test_a_run_in_an_environment_that_is_not_there_is_refused(
    stack, api_key, script, environment, expected
):
    model = script("env-never", [{"text": "never"}])
    with http(stack, api_key) as api:
        before = len(api.get("/interactions").json()["interactions"])
        refused = api.post(
            "/interactions",
            json=run_in(model, environment),
        )
        assert refused.status_code in (400, 404), refused.text
        assert expected in refused.json()["error"]["message"]
        assert len(api.get("/interactions").json()["interactions"]) == before


def test_environments_are_listed_paged_and_filtered_by_mode(stack, client, api_key):
    made = {client.environments.create().id for _ in range(3)}
    seen, token = set(), None
    while True:
        page = client.environments.list(page_size=2, page_token=token)
        seen |= {e.id for e in page.environments or []}
        if not (token := page.next_page_token):
            break
    assert made <= seen
    assert client.environments.list(mode="self_hosted").environments in (None, [])
    with http(stack, api_key) as api:
        bad = api.get("/environments", params={"mode": "weekly"})
        assert bad.status_code == 400 and "mode" in bad.json()["error"]["message"]
    kubectl = stack.control_plane.kubectl("get", "environments", "-n", TENANT, "-o", "name")
    assert {f"environment.tether.dev/{id_}" for id_ in made} <= set(kubectl.split())


def test_a_repository_source_is_cloned_over_https_once(stack, client, script):
    repository = {"README.md": "# tools\n", "src/run.py": "print('from the repo')\n"}
    with GitServer({"tools": repository}, host=HOST_ALIAS) as git:
        trusted = {"type": "inline", "target": "certs/ca.pem", "content": git.ca_pem}
        env = client.environments.create(
            sources=[trusted, {"type": "repository", "source": git.url("tools")}],
            network={"allowlist": [{"domain": HOST_ALIAS}]},
            extra_body={"env": {"GIT_SSL_CAINFO": "/workspace/certs/ca.pem"}},
        )
        code = "python3 tools/src/run.py; git -C tools log --oneline | wc -l"
        model = script("env-repo", [call("run_code", language="bash", code=code), {"text": "ok"}])
        done = agent_run(client, model, environment=env.id)
        assert done.status == "completed", done.errors
        assert results(done) == ["from the repo\n1\n"]
        assert "POST /tools.git/git-upload-pack" in git.requests
        cloned = len(git.requests)
        done = agent_run(client, model, environment=env.id)
        assert (done.status, results(done)) == ("completed", ["from the repo\n1\n"])
        assert len(git.requests) == cloned  # there already: not cloned again

        # Without the CA to trust, the clone fails on the certificate, and the run says so.
        untrusted = client.environments.create(
            sources=[{"type": "repository", "source": git.url("tools"), "target": "t"}],
            network={"allowlist": [{"domain": HOST_ALIAS}]},
        )
        done = agent_run(client, model, environment=untrusted.id)
        assert done.status == "failed"
        [error] = done.errors
        assert error.code == "invalid_source" and "certificate" in error.message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"sources": [{"type": "repository", "source": "https://git.example.com/r.git"}]},
            "sources[0].source: 'git.example.com' is not on the environment's network allowlist",
        ),
        (
            {
                "sources": [{"type": "repository", "source": "http://git.example.com/r.git"}],
                "network": {"allowlist": [{"domain": "git.example.com"}]},
            },
            "sources[0].source: repository 'http://git.example.com/r.git' must be an https:// URL",
        ),
        (
            {"sources": [{"type": "gcs", "source": "gs://bucket/dir"}]},
            "sources[0].type: source type 'gcs' is not supported",
        ),
        ({"mode": "self_hosted"}, "mode: self_hosted environments are not supported"),
        ({"env": {"A": {"secret_ref": {"name": "s", "key": "k"}}}}, "env"),
        ({"idle_timeout_seconds": 0}, "idle_timeout_seconds"),
    ],
)
def test_a_bad_environment_is_refused_naming_the_field(stack, api_key, body, expected):
    with http(stack, api_key) as api:
        before = {e["id"] for e in api.get("/environments").json()["environments"]}
        refused = api.post("/environments", json=body)
        assert refused.status_code == 400, refused.text
        assert expected in refused.json()["error"]["message"]
        after = {e["id"] for e in api.get("/environments").json()["environments"]}
        assert after == before


def test_of_many_runs_started_at_once_in_one_environment_exactly_one_is_created(
    stack, client, api_key, script
):
    env = client.environments.create()
    model = script("env-race", [call("run_code", language="bash", code="sleep 3"), {"text": "ok"}])
    body = run_in(model, env.id, background=True)
    with http(stack, api_key) as api:
        before = {
            i["id"]
            for i in api.get("/interactions", params={"page_size": 1000}).json()["interactions"]
        }
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda _: api.post("/interactions", json=body), range(12)))
        after = {
            i["id"]
            for i in api.get("/interactions", params={"page_size": 1000}).json()["interactions"]
        }
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 11, [a.text for a in answers if a.status_code != 409]
    [winner] = [a.json()["id"] for a in answers if a.status_code == 200]
    assert after - before == {winner}
    assert wait_until_ended(client, winner, timeout=60).status == "completed"


def test_a_run_created_with_kubectl_in_a_busy_environment_fails_saying_so(stack, client, script):
    env = client.environments.create()
    slow = script("env-held", [call("run_code", language="bash", code="sleep 5"), {"text": "ok"}])
    holder = client.interactions.create(
        agent="eva",
        input="go",
        agent_config={"type": "dynamic", "model": slow},
        environment=env.id,
        background=True,
    )
    applied = {
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "Interaction",
        "metadata": {"name": "ix-kubectl-busy", "namespace": TENANT},
        "spec": {
            "agent": "eva",
            "input": "go",
            "agentConfig": {"model": slow},
            "environment": env.id,
        },
    }
    stack.cluster.apply(applied)
    done = wait_until_ended(client, "ix-kubectl-busy", timeout=60)
    assert done.status == "failed"
    [error] = done.errors
    assert error.code == "environment_busy" and holder.id in error.message
    assert wait_until_ended(client, holder.id, timeout=60).status == "completed"


def test_deleting_an_environment_deletes_its_volume(stack, client, script):
    env = client.environments.create()
    model = script("env-gone", [call("write_file", path="x.txt", content="x"), {"text": "ok"}])
    assert agent_run(client, model, environment=env.id).status == "completed"
    assert volume(stack, env.id) is not None
    client.environments.delete(env.id)
    deadline = time.monotonic() + 60
    while volume(stack, env.id) is not None:  # the garbage collector follows the owner
        assert time.monotonic() < deadline, "the volume outlived its environment"
        time.sleep(0.5)
    assert api_error(lambda: client.environments.delete(env.id)).status_code == 404
