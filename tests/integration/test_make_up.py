"""`make up` / `make down`: the chart, installed by helm onto a local control plane and a real
node, from images built here. The quickstart, the SDK e2e suite and `make demo` run against it;
a sandbox is held to what it may reach and read; `make down` puts the host back, and the next
`make up` finds the data again."""

from __future__ import annotations

import base64
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import kubernetes
import pytest

from tests.conftest import sdk_client
from tests.integration.test_real_node_host import processes_from
from tests.integration.test_sdk_interactions import wait_until_ended
from tests.integration.test_webhooks import Receiver, message_about
from tether.crds import ROOT
from tether.dev.control_plane import free_port, helm_binary
from tether.dev.fakes.anthropic import AnthropicServer
from tether.dev.fakes.serving import Reply
from tether.dev.processes import wait_until
from tether.dev.stack import Cluster, accepts, new_api_key
from tether.dev.versions import CACHE
from tether.dev.worker.configs import HOST_ALIAS
from tether.dev.worker.host import HostState
from tether.dev.worker.parts import NodeParts

pytestmark = [pytest.mark.integration, pytest.mark.own_cluster]


def cli(state: Path, *args: str, port: int, **environ: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tether.dev.up", *args, "--state", str(state)],
        env={**os.environ, "TETHER_PORT": str(port), **environ},
        capture_output=True,
        text=True,
        timeout=1800,
    )


def read_env(state: Path) -> dict[str, str]:
    lines = (state / "env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


class Up:
    def __init__(
        self,
        state: Path,
        port: int,
        first: subprocess.CompletedProcess,
        vendor: AnthropicServer,
        environ: dict[str, str],
    ) -> None:
        self.state, self.port, self.first = state, port, first
        self.vendor, self.environ = vendor, environ
        self.env = read_env(state)
        self.sdk = sdk_client(self.env["TETHER_URL"], self.env["TETHER_API_KEY"])
        self.demo_id = ""
        self.environment_id = ""

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return cli(self.state, *args, port=self.port, **self.environ)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        """The kubectl `.tether/env` puts on PATH, on the KUBECONFIG it names."""
        kubectl = self.env["PATH"].split(":")[0] + "/kubectl"
        return run([kubectl, f"--kubeconfig={self.env['KUBECONFIG']}", *args], stdin)

    def helm(self, *args: str) -> str:
        kubeconfig = f"--kubeconfig={self.env['KUBECONFIG']}"
        return run([str(helm_binary()), kubeconfig, "-n", "tether-system", *args])

    def ctr(self, *args: str) -> str:
        """containerd's own client, on the node's Kubernetes namespace."""
        socket_path = self.state / "cluster" / "node" / "containerd" / "containerd.sock"
        ctr = str(NodeParts.from_cache().ctr)
        return run([ctr, "--address", str(socket_path), "-n", "k8s.io", *args])


def run(argv: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def before():
    return HostState.observe(), processes_from(CACHE)


@pytest.fixture(scope="module")
def vendor():
    """A local server speaking Anthropic's Messages API, as a user's vendor key would reach."""
    with AnthropicServer(replies=[Reply("hello from the vendor")]) as server:
        yield server


@pytest.fixture(scope="module")
def up(tmp_path_factory, before, vendor):
    state, port = tmp_path_factory.mktemp("up"), free_port()
    environ = {"ANTHROPIC_API_KEY": "sk-ant-local-123", "ANTHROPIC_BASE_URL": vendor.url}
    first = cli(state, "up", port=port, **environ)
    log = state / "logs" / "supervisor.log"
    assert first.returncode == 0, first.stdout + first.stderr + log.read_text()[-3000:]
    yield Up(state, port, first, vendor, environ)
    cli(state, "down", port=port)


def test_up_runs_the_chart_from_images_built_here_and_prints_how_to_call_it(up):
    assert set(up.env) == {
        "TETHER_URL",
        "TETHER_API_KEY",
        "TETHER_NAMESPACE",
        "KUBECONFIG",
        "TETHER_HOST_ALIAS",
        "PATH",
    }
    assert up.env["TETHER_URL"] == f"http://127.0.0.1:{up.port}"
    assert f"TETHER_API_KEY={up.env['TETHER_API_KEY']}" in up.first.stdout
    assert "genai.Client" in up.first.stdout
    assert up.sdk.interactions.create(model="echo", input="hi from make up").output_text == (
        "hi from make up"
    )
    pods = json.loads(up.kubectl("get", "pods", "-n", "tether-system", "-o", "json"))["items"]
    images = {c["image"] for pod in pods for c in pod["spec"]["containers"]}
    assert images == {
        "tether.local/tether-operator:dev",
        "tether.local/tether-gateway:dev",
        "tether.local/tether-egress:dev",
        "tether.local/redis:7",
    }
    assert all(pod["status"]["phase"] == "Running" for pod in pods)
    releases = json.loads(up.helm("list", "-o", "json"))
    assert [(r["name"], r["status"]) for r in releases] == [("tether", "deployed")]
    again = up.cli("up")
    assert "already running" in again.stdout


def test_the_sdk_e2e_suite_passes_against_it(up):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/e2e"],
        env={
            **os.environ,
            "TETHER_E2E_URL": up.env["TETHER_URL"],
            "TETHER_E2E_API_KEY": up.env["TETHER_API_KEY"],
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


def test_a_vendor_key_serves_the_quickstart_tools_images_and_eva_unchanged(up):
    assert "Models: claude-opus-5-5 (anthropic); eva runs on claude-opus-5-5." in up.first.stdout
    sdk, vendor = up.sdk, up.vendor
    vendor.replies = [Reply("hello from the vendor")]
    quick = sdk.interactions.create(model="claude-opus-5-5", input="hi")
    assert (quick.status, quick.output_text) == ("completed", "hello from the vendor")
    assert vendor.api_keys[-1] == "sk-ant-local-123"

    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    vendor.replies = [Reply(tool_calls=[{"name": "get_weather", "arguments": {}}]), Reply("cold")]
    vendor.served = 0
    asked = sdk.interactions.create(model="claude-opus-5-5", input="weather?", tools=[weather])
    assert asked.status == "requires_action"
    answered = sdk.interactions.create(
        model="claude-opus-5-5",
        previous_interaction_id=asked.id,
        input=[{"type": "function_result", "call_id": asked.steps[0].id, "result": "-3 C"}],
    )
    assert answered.output_text == "cold"

    vendor.replies, vendor.served = [Reply("a tiny picture")], 0
    image = {"type": "image", "mime_type": "image/png", "data": PNG}
    question = {"type": "text", "text": "what is this?"}
    seen = sdk.interactions.create(model="claude-opus-5-5", input=[question, image])
    assert seen.output_text == "a tiny picture"
    assert vendor.requests[-1]["messages"][-1]["content"][1]["source"]["data"] == PNG

    vendor.replies, vendor.served = [Reply("eva here")], 0
    eva = sdk.interactions.create(agent="eva", input="say hello")
    assert (eva.status, eva.output_text) == ("completed", "eva here")


def test_a_receiver_on_the_hosts_loopback_gets_signed_webhooks_from_the_chart(up):
    sdk, vendor = up.sdk, up.vendor
    with Receiver() as receiver:
        webhook = sdk.webhooks.create(uri=receiver.url, subscribed_events=["interaction.completed"])
        try:
            vendor.replies, vendor.served = [Reply("announced")], 0
            started = sdk.interactions.create(model="claude-opus-5-5", input="hi", background=True)
            wait_until_ended(sdk, started.id)
            message = message_about(receiver, webhook.new_signing_secret, "id", started.id)
            assert message["type"] == "interaction.completed"
        finally:
            sdk.webhooks.delete(webhook.id)


def test_make_demo_runs_its_agent_under_gvisor_and_reaches_the_hosts_loopback(up):
    done = subprocess.run(
        [sys.executable, "-m", "tether.dev.demo", "--env", str(up.state / "env")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"pricing pages served at http://{HOST_ALIAS}:" in done.stdout
    assert "globex,Enterprise,199.00" in done.stdout
    up.demo_id = done.stdout.split("interaction ")[1].split(":")[0]


def scripted(up: Up, namespace: str, name: str, responses: list[dict]) -> str:
    """A `scripted` Model in `namespace`, playing `responses`; its name."""
    model = {
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": "scripted", "responses": responses},
    }
    up.kubectl("apply", "-f", "-", stdin=json.dumps(model))
    return name


# -- what a sandbox can reach and read ----------------------------------------------------------

PROBE = """
import json, os, pathlib, socket, subprocess, urllib.error, urllib.request
targets = json.loads(pathlib.Path("targets.json").read_text())

def through_proxy(host, port):  # urllib takes the proxy from http_proxy, as most tools do
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError as error:
        return type(error).__name__

def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "connected"
    except socket.timeout:
        return "timed out"
    except OSError as error:
        return f"{type(error).__name__}: {error}"

def readable(path):
    try:
        return path.read_text(errors="replace")[:4000] if path.stat().st_size < 1_000_000 else ""
    except OSError:
        return ""

environs = {p.parent.name: readable(p) for p in pathlib.Path("/proc").glob("[0-9]*/environ")}
files = {}
for top in ("/run", "/var/run", "/tmp", "/workspace", "/etc", "/root", "/home", "/var/lib"):
    for path in pathlib.Path(top).rglob("*"):
        if path.is_file() and not path.is_symlink():
            files[str(path)] = readable(path)
status = pathlib.Path("/proc/self/status").read_text()
report = {
    "reach": {name: reach(host, port) for name, (host, port) in targets.items()},
    "proxied": {name: through_proxy(host, port) for name, (host, port) in targets.items()},
    "uid": os.getuid(),
    "cap_eff": [l.split()[1] for l in status.splitlines() if l.startswith("CapEff")][0],
    "kernel": os.uname().version,
    "dmesg": subprocess.run(["dmesg"], capture_output=True, text=True).stdout[:3000],
    "environ": dict(os.environ),
    "process_environs": environs,
    "mounts": pathlib.Path("/proc/self/mountinfo").read_text(),
    "files": files,
}
pathlib.Path("report.json").write_text(json.dumps(report))
print(json.dumps(report["reach"]))
"""


class Answers(http.server.BaseHTTPRequestHandler):
    """A server on the host's loopback that answers every GET (/healthz too, as another Tether
    on the port would)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


def probe(up: Up, name: str, targets: dict[str, tuple[str, int]], allowlist: list[str]) -> dict:
    """An agent run whose code probes `targets` and dumps what it can read; its report."""
    targets_file = {"path": "targets.json", "content": json.dumps(targets)}
    code = {"language": "python", "code": PROBE}
    scripted(
        up,
        up.env["TETHER_NAMESPACE"],
        name,
        [
            {"functionCalls": [{"name": "write_file", "arguments": targets_file}]},
            {"functionCalls": [{"name": "run_code", "arguments": code}]},
            {"text": "probed"},
        ],
    )
    done = up.sdk.interactions.create(
        agent="eva",
        input="probe the network",
        agent_config={"type": "dynamic", "model": name, "max_steps": 5},
        environment={
            "type": "remote",
            "network": {"allowlist": [{"domain": d} for d in allowlist]},
        },
    )
    assert done.status == "completed", done
    report = httpx.get(
        f"{up.env['TETHER_URL']}/v1/interactions/{done.id}/files/report.json",
        headers={"x-goog-api-key": up.env["TETHER_API_KEY"]},
    )
    assert report.status_code == 200, report.text
    return {"interaction": done.id, **report.json()}


def test_a_sandbox_reaches_only_what_its_allowlist_names_and_reads_no_secret(up):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    loopback_port = server.server_address[1]
    api = urllib.parse.urlsplit(
        json.loads(up.kubectl("config", "view", "-o", "json"))["clusters"][0]["cluster"]["server"]
    )
    node = json.loads(up.kubectl("get", "node", "-o", "json"))["items"][0]
    kubelet_port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    operator = "app.kubernetes.io/name=tether-operator"
    operators = up.kubectl("get", "pods", "-n", "tether-system", "-l", operator, "-o", "json")
    operator_ip = json.loads(operators)["items"][0]["status"]["podIP"]
    targets = {
        "redis": ("tether-redis.tether-system.svc.cluster.local", 6379),
        "api server (Service)": ("kubernetes.default.svc.cluster.local", 443),
        "api server (node)": (api.hostname, api.port),
        "kubelet": (api.hostname, kubelet_port),
        "operator metrics": (operator_ip, 9090),
        "metadata address": ("169.254.169.254", 80),
        "host loopback": (HOST_ALIAS, loopback_port),
        "gateway's public API": ("tether-gateway.tether-system.svc.cluster.local", 8080),
        "gateway's internal API": ("tether-gateway-internal.tether-system.svc.cluster.local", 8081),
    }
    try:
        closed = probe(up, "probe-closed", targets, allowlist=[])
        opened = probe(up, "probe-opened", targets, allowlist=["*"])
    finally:
        server.shutdown()
        server.server_close()

    # Raw sockets: refused or timed out in the network, whatever the allowlist says. The
    # gateway's internal port (and the egress proxy, not a target) are all a sandbox reaches.
    for report in (closed, opened):
        blocked = {name: r for name, r in report["reach"].items() if r != "connected"}
        assert set(blocked) == set(targets) - {"gateway's internal API"}, report["reach"]
    # Through the egress proxy: nothing for a run whose allowlist is empty. Everything for
    # "*", except private addresses: the platform's services, the node, the metadata address;
    # the host alias is the one private destination the platform names (egress.namedHosts).
    assert set(closed["proxied"].values()) == {403}, closed["proxied"]
    assert opened["proxied"] == {
        name: 200 if name == "host loopback" else 403 for name in targets
    }, opened["proxied"]

    # Untrusted code runs under gVisor, as non-root, with no capabilities.
    assert closed["kernel"] != os.uname().version
    assert (closed["uid"], closed["cap_eff"]) == (1000, "0000000000000000")
    pod_spec = json.loads(
        up.kubectl("get", "pods", "-n", up.env["TETHER_NAMESPACE"], "-o", "json")
    )["items"]
    assert pod_spec == [] or {p["spec"].get("runtimeClassName") for p in pod_spec} == {"gvisor"}

    # No token, no signing key, no service-account token anywhere it can read.
    signing_key = base64.b64decode(
        json.loads(
            up.kubectl("get", "secret", "-n", "tether-system", "tether-run-token-key", "-o", "json")
        )["data"]["key"]
    ).decode()
    readable = json.dumps(closed)
    assert signing_key not in readable
    assert "/var/run/tether" not in closed["mounts"]
    assert "serviceaccount" not in closed["mounts"]
    assert not [name for name in closed["environ"] if "TOKEN" in name or "KEY" in name]


# -- runs whose sandbox goes, and runs of two tenants ---------------------------------------------


def running_sandbox(up: Up, namespace: str, interaction: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        selector = f"tether.dev/interaction={interaction}"
        listed = up.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
        pods = json.loads(listed)["items"]
        ready = [p for p in pods if p["status"].get("phase") == "Running"]
        if ready and all(c.get("ready") for c in ready[0]["status"]["containerStatuses"]):
            return ready[0]
        time.sleep(0.2)
    raise AssertionError(f"no running sandbox for {interaction}")


@pytest.mark.parametrize("how", ["evicted", "killed"])
def test_a_sandbox_evicted_or_killed_mid_run_ends_its_run_failed_once(up, how):
    namespace = up.env["TETHER_NAMESPACE"]
    model = scripted(up, namespace, f"slow-{how}", [{"text": "never", "delaySeconds": 120}])
    started = up.sdk.interactions.create(
        agent="eva", input="go", agent_config={"type": "dynamic", "model": model}, background=True
    )
    pod = running_sandbox(up, namespace, started.id)
    name = pod["metadata"]["name"]
    if how == "evicted":  # as the kubelet or a drain does, through the Eviction API
        eviction = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        up.kubectl("create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction",
                   "-f", "-", stdin=json.dumps(eviction))  # fmt: skip
    else:  # the agent's process dies under it (SIGKILL, as the OOM killer would)
        agent = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "agent")
        container = agent["containerID"].removeprefix("containerd://")
        up.ctr("tasks", "kill", "-s", "SIGKILL", container)
    done = wait_until_ended(up.sdk, started.id, timeout=90)
    assert done.status == "failed"
    assert done.errors[0].code in ("sandbox_lost", "sandbox_crashed", "sandbox_failed")
    assert done.errors[0].message
    events = list(up.sdk.interactions.get(started.id, stream=True))
    assert [e.event_type for e in events].count("interaction.completed") == 1


TENANT_CODE = """
import os, pathlib, socket, time
pathlib.Path("mine.txt").write_text(os.environ.get("WHO", "?"))
time.sleep(6)
print(sorted(p.name for p in pathlib.Path(".").iterdir()))
"""


def test_two_tenants_running_at_once_share_no_sandbox_address_or_file(up):
    other, key = "tenant-other", new_api_key()
    Cluster(kubernetes.config.new_client_from_config(up.env["KUBECONFIG"])).api_key(other, key)
    up.kubectl("label", "namespace", other, "pod-security.kubernetes.io/enforce=restricted")
    wait_until("the new API key", lambda: accepts(up.env["TETHER_URL"], key), 30)
    clients = {up.env["TETHER_NAMESPACE"]: up.sdk, other: sdk_client(up.env["TETHER_URL"], key)}
    started = {}
    for namespace, client in clients.items():
        code = {"name": "run_code", "arguments": {"language": "python", "code": TENANT_CODE}}
        model = scripted(up, namespace, "two-tenants", [{"functionCalls": [code]}, {"text": "ok"}])
        started[namespace] = client.interactions.create(
            agent="eva",
            input="go",
            agent_config={"type": "dynamic", "model": model},
            environment={"type": "remote", "env": {"WHO": namespace}},
            background=True,
        )
    pods = {ns: running_sandbox(up, ns, run.id) for ns, run in started.items()}
    names = {p["metadata"]["name"] for p in pods.values()}
    addresses = {p["status"]["podIP"] for p in pods.values()}
    assert len(names) == len(addresses) == 2
    first, second = pods.values()
    reach = (
        "import socket\ntry:\n socket.create_connection(({ip!r}, {port}), timeout=3)\n"
        " print('connected')\nexcept OSError as e:\n print(type(e).__name__)"
    )
    for port in (8080, 8081, 9090):  # no port of the other sandbox answers it
        probe = reach.format(ip=second["status"]["podIP"], port=port)
        answer = up.kubectl(
            "exec", "-n", first["metadata"]["namespace"], first["metadata"]["name"],
            "-c", "workspace", "--", "python", "-c", probe,
        )  # fmt: skip
        assert answer.strip() != "connected"
    for namespace, run in started.items():
        done = wait_until_ended(clients[namespace], run.id, timeout=90)
        assert done.status == "completed", done
        mine = httpx.get(
            f"{up.env['TETHER_URL']}/v1/interactions/{run.id}/files/mine.txt",
            headers={"x-goog-api-key": up.env["TETHER_API_KEY"] if namespace != other else key},
        )
        assert mine.text == namespace
    # and neither tenant can read the other's run
    cross = httpx.get(
        f"{up.env['TETHER_URL']}/v1/interactions/{started[other].id}",
        headers={"x-goog-api-key": up.env["TETHER_API_KEY"]},
    )
    assert cross.status_code == 404


# -- helm upgrade -------------------------------------------------------------------------------


def test_helm_upgrade_to_a_new_image_rolls_the_gateway_without_losing_a_run(up):
    for target in ("operator", "gateway", "egress"):  # version 2, as a registry would hold it
        up.ctr("images", "tag", "--force", f"tether.local/tether-{target}:dev",
               f"tether.local/tether-{target}:v2")  # fmt: skip
    running = up.sdk.interactions.create(model="echo", input="/sleep 8", background=True)
    up.helm("upgrade", "tether", str(ROOT / "charts" / "tether"), "--reuse-values",
            "--set", "image.tag=v2", "--wait", "--timeout", "3m")  # fmt: skip
    pods = json.loads(up.kubectl("get", "pods", "-n", "tether-system", "-o", "json"))["items"]
    images = {c["image"] for pod in pods for c in pod["spec"]["containers"]}
    assert {"tether.local/tether-operator:v2", "tether.local/tether-gateway:v2"} <= images
    assert wait_until_ended(up.sdk, running.id).status == "completed"
    assert up.sdk.interactions.create(model="echo", input="after").output_text == "after"
    up.helm("upgrade", "tether", str(ROOT / "charts" / "tether"), "--reuse-values",
            "--set", "image.tag=dev", "--wait", "--timeout", "3m")  # fmt: skip


def note_in(up: Up, environment: str) -> str:
    """An agent run in `environment` that adds a line to notes.md; what the file then holds."""
    namespace = up.env["TETHER_NAMESPACE"]
    code = "echo run >> notes.md; cat notes.md"
    arguments = {"language": "bash", "code": code}
    call = {"functionCalls": [{"name": "run_code", "arguments": arguments}]}
    model = scripted(up, namespace, "env-notes", [call, {"text": "noted"}])
    done = up.sdk.interactions.create(
        agent="eva",
        input="note it",
        agent_config={"type": "dynamic", "model": model},
        environment=environment,
    )
    assert (done.status, done.environment_id) == ("completed", environment), done.errors
    [result] = [s.result for s in done.steps if s.type == "code_execution_result"]
    return result


def test_an_environment_keeps_its_files_between_runs_under_gvisor(up):
    env = up.sdk.environments.create(
        sources=[{"type": "inline", "target": "notes.md", "content": "# notes\n"}]
    )
    assert note_in(up, env.id) == "# notes\nrun\n"
    assert note_in(up, env.id) == "# notes\nrun\nrun\n"
    namespace = up.env["TETHER_NAMESPACE"]
    listed = up.kubectl("get", "environments", "-n", namespace)
    print(f"$ kubectl get environments -n $TETHER_NAMESPACE\n{listed}")  # the README's
    assert env.id in listed and "active" in listed
    volume = up.kubectl("get", "pvc", f"workspace-{env.id}", "-n", namespace, "-o", "json")
    claim = json.loads(volume)
    assert claim["status"]["phase"] == "Bound"
    # Its files through the API: the gateway's pod reaches the environment's files pod, which
    # its NetworkPolicy lets the gateway alone reach.
    files = up.sdk.environments.files
    assert files.download(environment=env.id, path="notes.md") == b"# notes\nrun\nrun\n"
    files.upload(environment=env.id, path="from-the-api.txt", file=b"uploaded")
    listed = {f.path for f in files.list(environment=env.id, path="").files}
    assert {"notes.md", "from-the-api.txt"} <= listed
    up.environment_id = env.id


# -- make down, make up again --------------------------------------------------------------------


def test_down_puts_the_host_back_and_the_next_up_finds_the_data(up, before):
    host, running = before
    down = up.cli("down")
    assert "Tether stopped." in down.stdout
    assert host.differences(HostState.observe()) == {}
    assert processes_from(CACHE) == running
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", up.port)) != 0

    again = up.cli("up")
    assert again.returncode == 0, again.stderr
    env = read_env(up.state)
    assert env["TETHER_API_KEY"] == up.env["TETHER_API_KEY"]  # the same key
    sdk = sdk_client(env["TETHER_URL"], env["TETHER_API_KEY"])
    assert up.demo_id, "the demo ran"
    kept = sdk.interactions.get(up.demo_id)
    assert kept.status == "completed"
    assert "Globex Enterprise" in kept.output_text
    csv = httpx.get(
        f"{env['TETHER_URL']}/v1/interactions/{up.demo_id}/files/prices.csv",
        headers={"x-goog-api-key": env["TETHER_API_KEY"]},
    )
    assert "acme,Starter,9.00" in csv.text  # Redis's volume survived
    events = list(sdk.interactions.get(up.demo_id, stream=True))
    assert events[-1].event_type == "interaction.completed"
    assert up.environment_id, "the environment test ran"
    up.sdk = sdk
    assert note_in(up, up.environment_id) == "# notes\nrun\nrun\nrun\n"  # its volume survived

    # helm uninstall: Tether's pods go; the Redis claim (helm.sh/resource-policy: keep) and
    # the CRDs with every Interaction stay
    up.helm("uninstall", "tether", "--wait", "--timeout", "2m")
    up.kubectl("wait", "--for=delete", "pods", "--all", "-n", "tether-system", "--timeout=90s")
    left = json.loads(up.kubectl("get", "deployments,pods", "-n", "tether-system", "-o", "json"))
    assert left["items"] == []
    assert "tether-redis" in up.kubectl("get", "pvc", "-n", "tether-system", "-o", "name")
    assert up.demo_id in up.kubectl("get", "interactions", "-n", env["TETHER_NAMESPACE"])

    assert "Tether stopped." in up.cli("down").stdout
    assert host.differences(HostState.observe()) == {}


def test_make_down_puts_the_host_back_after_make_up_was_killed(up, before):
    host, running = before
    again = up.cli("up")  # (after the uninstall above: installs again)
    assert again.returncode == 0, again.stderr
    supervisor = int((up.state / "supervisor.pid").read_text())
    os.kill(supervisor, signal.SIGKILL)  # no chance to stop anything: its children die with it
    deadline = time.monotonic() + 30
    while Path(f"/proc/{supervisor}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "links" in host.differences(HostState.observe())  # its bridge is still there

    down = up.cli("down")
    assert down.stdout == "Tether was not running; put back what its last run left on this host.\n"
    assert host.differences(HostState.observe()) == {}
    assert processes_from(CACHE) == running


@pytest.mark.parametrize("other", ["listener", "gateway"])
def test_up_on_a_taken_port_says_so_in_one_line_and_starts_nothing(tmp_path, other):
    if other == "gateway":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        close = lambda: (server.shutdown(), server.server_close())  # noqa: E731
    else:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port, close = taken.getsockname()[1], taken.close
    try:
        up = cli(tmp_path, "up", port=port)
    finally:
        close()
    assert up.returncode == 1
    assert up.stdout == ""
    assert up.stderr.splitlines() == [
        f"Port {port} is taken by another program; choose another: TETHER_PORT={port + 1} make up"
    ]
    assert not (tmp_path / "supervisor.pid").exists()
    assert not (tmp_path / "env").exists()


def test_down_when_nothing_runs(tmp_path):
    assert cli(tmp_path, "down", port=free_port()).stdout == "Tether is not running.\n"
