"""The API client's HTTP session: where its requests go is settled once, not on every request."""

from __future__ import annotations

import yaml

from tether.kube import Kube
from tether.settings import Settings


def kubeconfig(path, server: str) -> str:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


async def test_no_proxy_variable_means_no_lookups_per_request(tmp_path, monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(kubeconfig=kubeconfig(tmp_path / "config", "https://127.0.0.1:6443"))
    kube = await Kube.connect(settings, component="test")
    try:
        assert kube.api.rest_client.pool_manager.trust_env is False
    finally:
        await kube.close()


async def test_a_proxy_for_the_api_server_is_still_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = Settings(kubeconfig=kubeconfig(tmp_path / "config", "https://10.0.0.1:6443"))
    kube = await Kube.connect(settings, component="test")
    try:
        assert kube.api.rest_client.pool_manager.trust_env is True
    finally:
        await kube.close()
