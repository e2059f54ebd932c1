"""The workspace tool server over real HTTP: code, files, fetches and clones (the allowlist is
the egress proxy's: tests/integration/test_egress.py)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tether.dev.fakes.git_https import GitServer
from tether.sandbox.workspace import create_app


@pytest.fixture
async def page():
    app = web.Application()

    async def prices(_: web.Request) -> web.Response:
        return web.Response(text="widget,9.99\n")

    app.router.add_get("/prices", prices)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_python_and_bash_run_in_the_workspace(tools, tmp_path):
    result = await tools(
        "run_code", language="python", code="open('a.txt','w').write('hi'); print(2+2)"
    )
    assert result == {"ok": True, "exit_code": 0, "timed_out": False, "stdout": "4\n", "stderr": ""}
    assert (tmp_path / "a.txt").read_text() == "hi"
    result = await tools("run_code", language="bash", code="cat a.txt; exit 3")
    assert (result["stdout"], result["exit_code"]) == ("hi", 3)


async def test_code_is_stopped_at_its_time_limit(tools):
    result = await tools(
        "run_code", language="bash", code="sleep 30 & sleep 30", timeout_seconds=0.5
    )
    assert result["timed_out"] is True
    assert "killed after 0.5s" in result["stderr"]


async def test_output_is_clipped(tools):
    result = await tools("run_code", language="python", code="print('x' * 100000)")
    assert len(result["stdout"]) < 17000
    assert "bytes cut" in result["stdout"]


async def test_files_are_written_read_and_listed(tools):
    assert (await tools("write_file", path="/workspace/out/prices.csv", content="a,1\n"))["ok"]
    assert (await tools("read_file", path="out/prices.csv"))["content"] == "a,1\n"
    listed = await tools("list_files", path="out")
    assert listed["entries"] == [{"name": "prices.csv", "type": "file", "bytes": 4}]


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "/workspacefoo/x", "a/../../b"])
async def test_paths_cannot_leave_the_workspace(tools, path):
    result = await tools("read_file", path=path)
    assert result["ok"] is False
    assert "outside the workspace" in result["error"]


async def test_fetch_returns_the_page_and_takes_http_and_https_only(tools, page):
    fetched = await tools("fetch_url", url=f"http://127.0.0.1:{page.port}/prices")
    assert (fetched["status"], fetched["text"]) == (200, "widget,9.99\n")
    assert "only http and https" in (await tools("fetch_url", url="file:///etc/passwd"))["error"]


async def test_a_warm_workspace_serves_no_tool_until_bound_and_is_bound_once(tmp_path):
    client = TestClient(TestServer(create_app(tmp_path, run=""), host="127.0.0.1"))
    await client.start_server()
    try:
        unbound = await client.post("/tools/list_files", json={}, headers={"X-Tether-Run": ""})
        assert unbound.status == 403
        assert (await client.post("/bind", json={"run": ""})).status == 409
        assert (await client.post("/bind", json={"run": "run-a"})).status == 200
        assert (await client.post("/bind", json={"run": "run-a"})).status == 200  # a retry
        assert (await client.post("/bind", json={"run": "run-b"})).status == 409
        assert (await (await client.get("/healthz")).json())["run"] == "run-a"
        own = await client.post("/tools/list_files", json={}, headers={"X-Tether-Run": "run-a"})
        assert own.status == 200
        other = await client.post("/tools/list_files", json={}, headers={"X-Tether-Run": "run-b"})
        assert other.status == 403
    finally:
        await client.close()


async def test_a_caller_naming_another_run_is_refused(tmp_path):
    client = TestClient(TestServer(create_app(tmp_path, run="run-a"), host="127.0.0.1"))
    await client.start_server()
    try:
        assert (await (await client.get("/healthz")).json())["run"] == "run-a"
        other = await client.post("/tools/list_files", json={}, headers={"X-Tether-Run": "run-b"})
        assert other.status == 403
        assert "another run" in (await other.json())["error"]
        own = await client.post("/tools/list_files", json={}, headers={"X-Tether-Run": "run-a"})
        assert own.status == 200
    finally:
        await client.close()


@pytest.fixture
def git(tmp_path, monkeypatch):
    """A git server over HTTPS at localhost, whose CA the workspace's git trusts."""
    with GitServer({"tools": {"README.md": "# tools\n"}}) as server:
        (tmp_path.parent / "ca.pem").write_text(server.ca_pem)
        monkeypatch.setenv("GIT_SSL_CAINFO", str(tmp_path.parent / "ca.pem"))
        yield server


async def test_a_repository_is_cloned_once_and_over_https_only(tmp_path, git):
    client = TestClient(TestServer(create_app(tmp_path, run="run-t"), host="127.0.0.1"))
    await client.start_server()
    try:

        async def clone(**args):
            headers = {"X-Tether-Run": "run-t"}
            answer = await client.post("/tools/clone_repository", json=args, headers=headers)
            return await answer.json()

        assert await clone(url=git.url("tools"), path="tools") == {"ok": True, "path": "tools"}
        assert (tmp_path / "tools" / "README.md").read_text() == "# tools\n"
        again = await clone(url=git.url("tools"), path="tools", if_absent=True)
        assert again == {"ok": True, "path": "tools", "kept": True}
        taken = await clone(url=git.url("tools"), path="tools")
        assert "already there" in taken["error"]
        for url, why in [
            (f"http://localhost:{git.port}/tools.git", "https only"),
            (f"file://{tmp_path}", "https only"),
        ]:
            refused = await clone(url=url, path="other")
            assert refused["ok"] is False and why in refused["error"], refused
        escape = await clone(url=git.url("tools"), path="../outside")
        assert "outside the workspace" in escape["error"]
        missing = await clone(url=git.url("nothing"), path="nothing")
        assert missing["ok"] is False and "cloning" in missing["error"]
    finally:
        await client.close()
