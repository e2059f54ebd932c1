"""What `make up` installs (the offline models, and a Model per vendor key in the environment),
and how it keeps its processes running."""

import logging
import socket
import subprocess

import pytest
import yaml

from tether.dev.control_plane import (
    ephemeral_ports,
    free_port,
    helm_binary,
    load_or_create_pki,
    port_in_use,
)
from tether.dev.processes import Service, StartupError, Supervisor
from tether.dev.stack import SEED_DIR, default_agent, default_models
from tether.dev.vendors import summary, vendor_secrets


def test_the_offline_models_are_always_installed():
    assert [m["metadata"]["name"] for m in default_models({})] == ["echo", "scripted"]


def test_openai_base_url_adds_an_openai_compatible_model():
    models = default_models(
        {"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1", "OPENAI_MODEL": "Qwen/Qwen2.5-7B"}
    )
    routed = models[-1]
    assert routed["metadata"]["name"] == "qwen-qwen2.5-7b"
    assert routed["spec"] == {
        "provider": "openai-compatible",
        "endpoint": "http://127.0.0.1:8000/v1",
        "upstreamModel": "Qwen/Qwen2.5-7B",
        "aliases": ["Qwen/Qwen2.5-7B"],
    }


def test_each_vendor_key_adds_its_flagship_with_the_key_in_a_secret_never_inlined():
    environ = {"GEMINI_API_KEY": "g-sk1", "ANTHROPIC_API_KEY": "a-sk2", "OPENAI_API_KEY": "o-sk3"}
    models = {m["metadata"]["name"]: m["spec"] for m in default_models(environ)[2:]}
    assert {name: spec["provider"] for name, spec in models.items()} == {
        "gemini-pro-latest": "gemini",
        "claude-opus-5-5": "anthropic",
        "gpt-6.1-sol": "openai",
    }
    assert models["claude-opus-5-5"]["credentials"] == {
        "secretRef": {"name": "anthropic-credentials", "key": "api-key"}
    }
    secrets = {s["metadata"]["name"]: s["stringData"] for s in vendor_secrets(environ, "ns")}
    assert secrets["gemini-credentials"] == {"api-key": "g-sk1"}
    assert not any(key in str(models) for key in environ.values())


def test_eva_runs_on_the_first_vendor_present_else_on_scripted_and_says_so():
    both = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o", "ANTHROPIC_MODEL": "claude-x"}
    assert default_agent(both)["spec"]["agentConfig"]["model"] == "claude-x"
    assert (
        summary(both) == "Models: claude-x (anthropic), gpt-6.1-sol (openai); eva runs on claude-x."
    )
    assert default_agent({})["spec"]["agentConfig"]["model"] == "scripted"
    assert summary({}).startswith("No vendor key in the environment (GEMINI_API_KEY, ")
    assert "\n" not in summary({})


def test_make_up_seeds_the_same_models_and_agent_as_the_chart():
    chart = SEED_DIR.parent
    argv = [str(helm_binary()), "template", "ci", str(chart), "-s", "templates/defaults.yaml"]
    rendered = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    from_chart = {o["metadata"]["name"]: o for o in yaml.safe_load_all(rendered) if o}
    from_stack = {o["metadata"]["name"]: o for o in [*default_models({}), default_agent({})]}
    assert from_chart.keys() == from_stack.keys() == {"echo", "scripted", "eva"}
    for name, obj in from_stack.items():
        assert (obj["kind"], obj["spec"]) == (from_chart[name]["kind"], from_chart[name]["spec"])


def test_eva_uses_the_openai_compatible_model_when_one_is_configured():
    environ = {"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1", "OPENAI_MODEL": "Qwen/Qwen2.5-7B"}
    assert default_agent(environ)["spec"]["agentConfig"]["model"] == "Qwen/Qwen2.5-7B"


# -- supervision of child processes -------------------------------------------------------------


def sleeper(tmp_path, name: str = "sleeper", argv=("sleep", "60")) -> Service:
    return Service(name, list(argv), tmp_path / f"{name}.log", ready=lambda: True)


def crasher(tmp_path, script: str) -> Service:
    """A process that exits at once, and would never have answered."""
    return Service("crasher", ["sh", "-c", script], tmp_path / "crasher.log", ready=lambda: False)


@pytest.fixture
def supervisor():
    supervisor = Supervisor(first_delay=0.01, max_delay=0.04).start()
    yield supervisor
    supervisor.stop()


def test_a_killed_service_is_started_again_with_the_same_command(tmp_path, supervisor):
    service = sleeper(tmp_path)
    service.start()
    supervisor.watch(service)
    first = service.proc
    first.kill()
    first.wait()
    service.wait_ready(10)
    assert service.proc is not first
    assert service.proc.args == first.args
    assert supervisor.restarts == {"sleeper": 1}
    service.stop()


def test_a_crash_loop_backs_off_and_start_up_gives_up_with_the_log(tmp_path, supervisor, caplog):
    caplog.set_level(logging.WARNING, logger="tether.supervisor")
    service = crasher(tmp_path, "echo cannot start; exit 3")
    service.start()
    supervisor.watch(service)
    with pytest.raises(StartupError, match=r"crasher exited 5 times in a row:\ncannot start"):
        service.wait_ready(30)
    delays = [
        r.getMessage().split("restarting ")[1] for r in caplog.records if "restarting" in r.msg
    ]
    assert delays[:5] == ["now", "in 0.01 s", "in 0.02 s", "in 0.04 s", "in 0.04 s"]
    service.stop()


def test_a_service_stopped_on_purpose_stays_stopped(tmp_path, supervisor):
    service = sleeper(tmp_path)
    service.start()
    supervisor.watch(service)
    service.stop()
    supervisor.stop()  # joins the thread: every check it was going to make is done
    assert service.proc is None
    assert supervisor.restarts == {"sleeper": 0}


def test_unsupervised_start_up_fails_as_soon_as_the_process_exits(tmp_path):
    service = crasher(tmp_path, "echo no config; exit 2")
    service.start()
    with pytest.raises(StartupError, match=r"crasher exited with 2:\nno config"):
        service.wait_ready(30)


def test_a_port_someone_listens_on_is_in_use_and_a_free_one_is_not():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert port_in_use(taken.getsockname()[1])
    assert not port_in_use(free_port())


def test_a_picked_port_is_never_one_an_outgoing_connection_can_take_meanwhile():
    """A stack picks its ports, starts a cluster (hundreds of outgoing connections), and binds
    the gateway's last: a port from the ephemeral range was once taken by a connection in
    between, and every test after it failed with "address already in use"."""
    picked = [free_port() for _ in range(200)]
    assert not set(picked) & set(ephemeral_ports())
    assert len(set(picked)) == len(picked)


def test_the_cluster_keys_are_made_once_per_directory_and_kept(tmp_path):
    made = load_or_create_pki(tmp_path / "pki")
    assert set(made) >= {"ca.crt", "admin.crt", "admin.key", "admin.token", "sa.key", "sa.pub"}
    users = (tmp_path / "pki" / "tokens.csv").read_text()  # the API server's --token-auth-file
    assert users == f'{made["admin.token"].decode()},tether-admin,tether-admin,"system:masters"\n'
    assert load_or_create_pki(tmp_path / "pki") == made
    assert load_or_create_pki(tmp_path / "other") != made
