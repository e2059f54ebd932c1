"""Every component of the local stack is supervised: killed at any moment, start-up included, it
comes back on the same ports, data and certificates. Redis keeps event logs and agent files on
disk, so they survive a Redis restart and a whole new stack on the same directory."""

from __future__ import annotations

import subprocess
import threading
import time

import httpx
import pytest
import yaml

from tests.conftest import sdk_client
from tests.integration.test_sdk_interactions import wait_until_ended
from tether.dev.control_plane import helm_binary
from tether.dev.processes import http_ok
from tether.dev.stack import COMPONENTS, DevStack

TENANT = "tenant-supervised"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("supervised")


@pytest.fixture(scope="module")
def supervised(workdir, cluster, stack):
    """A stack of its own on the session's cluster, every process of it (the control plane's
    included) under the supervisor. The session's stack is stopped meanwhile: a cluster has one
    operator."""
    stack.stop()
    supervised = DevStack(workdir, local=cluster, supervise=True).start()
    yield supervised
    supervised.stop()
    stack.start()


@pytest.fixture(scope="module")
def key(supervised) -> str:
    return supervised.add_tenant(TENANT)


def events(client, interaction_id: str) -> list[tuple[str, str]]:
    return [
        (e.event_type, e.event_id) for e in client.interactions.get(interaction_id, stream=True)
    ]


def on_disk(workdir, text: str) -> bool:
    """Whether Redis's append-only files hold `text` yet (written before Redis answers, so in
    practice at once; a kill loses nothing written)."""
    files = (workdir / "redis" / "appendonlydir").glob("*")
    return any(text.encode() in f.read_bytes() for f in files)


def wait_for(what: str, condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} after {timeout}s"
        time.sleep(0.05)


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_killed_component_is_restarted_and_the_stack_answers_again(supervised, key, component):
    before = supervised.restarts[component]
    killed = supervised.procs[component]
    supervised.kill(component)
    assert killed.returncode == -9
    supervised.wait_healthy(timeout=90)
    assert supervised.restarts[component] == before + 1
    assert supervised.procs[component].args == killed.args  # same ports, files, certificates
    client = sdk_client(supervised.url, key)
    answer = client.interactions.create(model="echo", input=f"after {component} came back")
    assert (answer.status, answer.output_text) == ("completed", f"after {component} came back")


def test_an_event_stream_still_replays_after_redis_is_killed(supervised, key, workdir):
    client = sdk_client(supervised.url, key)
    done = client.interactions.create(model="echo", input="kept on disk")
    before = events(client, done.id)
    assert before[-1][0] == "interaction.completed"
    wait_for("the events on disk", lambda: on_disk(workdir, done.id))
    supervised.kill("redis")
    supervised.wait_healthy()
    assert events(client, done.id) == before


# -- a whole new stack on the same directory, its operator killed while it starts -------------


@pytest.fixture(scope="module")
def kept(supervised, key, workdir):
    """An agent run that wrote a file, and a model run: what the next stack must still have."""
    supervised.cluster.apply(
        {
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "writer", "namespace": TENANT},
            "spec": {
                "provider": "scripted",
                "responses": [
                    {
                        "functionCalls": [
                            {
                                "name": "write_file",
                                "arguments": {"path": "kept.txt", "content": "still here"},
                            }
                        ]
                    },
                    {"text": "wrote kept.txt"},
                ],
            },
        }
    )
    client = sdk_client(supervised.url, key)
    started = client.interactions.create(
        agent="eva",
        input="go",
        agent_config={"type": "dynamic", "model": "writer"},
        background=True,
    )
    agent = wait_until_ended(client, started.id, timeout=60)
    assert agent.status == "completed", agent.errors
    model = client.interactions.create(model="echo", input="a model run")
    runs = {run.id: events(client, run.id) for run in (agent, model)}
    wait_for("the runs on disk", lambda: all(on_disk(workdir, id_) for id_ in runs))
    return agent.id, runs


@pytest.fixture(scope="module")
def restarted(supervised, kept, workdir, cluster):
    """Stop the first stack whole (its cluster aside), start another on its directory, and
    SIGKILL the new operator while it is still starting."""
    supervised.stop()
    stack = DevStack(workdir, local=cluster, supervise=True)
    failures = []

    def start() -> None:
        try:
            stack.start()
        except BaseException as error:  # reported by the test
            failures.append(error)

    def operator_spawned() -> bool:
        return getattr(stack.services.get("operator"), "proc", None) is not None

    starting = threading.Thread(target=start)
    starting.start()
    wait_for("the new operator", lambda: operator_spawned() or not starting.is_alive(), 180)
    killed_while_starting = operator_spawned() and not http_ok(stack.operator_metrics_url)
    if killed_while_starting:
        stack.kill("operator")
    starting.join(timeout=180)
    yield stack, failures, killed_while_starting
    stack.stop()


def test_an_operator_killed_while_the_stack_starts_is_restarted_and_the_stack_comes_up(restarted):
    stack, failures, killed_while_starting = restarted
    assert killed_while_starting
    assert failures == []
    stack.wait_healthy()
    # and nothing else died: children outlive the thread that started them
    assert stack.restarts == {**dict.fromkeys(COMPONENTS, 0), "operator": 1}


def test_interactions_event_logs_and_files_survive_a_new_stack_on_the_same_directory(
    restarted, kept, key
):
    stack, failures, _ = restarted
    assert failures == []
    agent_id, runs = kept
    client = sdk_client(stack.url, stack.add_tenant(TENANT, key))
    for interaction_id, before in runs.items():
        assert client.interactions.get(interaction_id).status == "completed"
        assert events(client, interaction_id) == before
    file = httpx.get(
        f"{stack.url}/v1/interactions/{agent_id}/files/kept.txt",
        headers={"x-goog-api-key": key},
    )
    assert (file.status_code, file.text) == (200, "still here")


def test_the_charts_redis_keeps_an_append_only_file_on_a_claim():
    rendered = subprocess.run(
        [str(helm_binary()), "template", "ci", "charts/tether"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(rendered) if o}
    pod = objects["Deployment", "ci-redis"]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--dir") + 1] == "/data"
    assert pod["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "ci-redis"}}]
    assert objects["PersistentVolumeClaim", "ci-redis"]["spec"]["accessModes"] == ["ReadWriteOnce"]
