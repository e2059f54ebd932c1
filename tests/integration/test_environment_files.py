"""An Environment's files through the SDK's `environments.files` (list, download, upload), on
the real node: served by the environment's files pod, confined to its workspace."""

from __future__ import annotations

import io
import tarfile

import httpx
import pytest

from tests.integration.test_agent_runs import agent_run, call
from tests.integration.test_environments import http, results


def archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def workspace(client, script):
    """An environment a run has written into, symlinks out of it included."""
    env = client.environments.create(
        sources=[{"type": "inline", "target": "notes.md", "content": "hello\n"}]
    )
    code = "mkdir -p out/deep; echo data > out/deep/a.txt; ln -s /etc/passwd leak; ln -s /etc etc"
    model = script("files-writer", [call("run_code", language="bash", code=code), {"text": "ok"}])
    assert agent_run(client, model, environment=env.id).status == "completed"
    return env.id


def test_the_files_a_run_left_are_listed_and_downloaded(client, workspace):
    files = client.environments.files
    listed = files.list(environment=workspace, path="", recursive=True).files
    kinds = {f.path: f.type for f in listed}
    assert {"notes.md": "file", "out": "directory", "out/deep/a.txt": "file"}.items() <= (
        kinds.items()
    )
    assert "etc/passwd" not in kinds  # a symlinked directory is not walked into
    [entry] = files.list(environment=workspace, path="out/deep/a.txt").files
    assert (entry.name, entry.size_bytes, entry.type) == ("a.txt", 5, "file")
    top = {f.path for f in files.list(environment=workspace, path="").files}
    assert "out/deep/a.txt" not in top and "out" in top
    assert files.download(environment=workspace, path="out/deep/a.txt") == b"data\n"
    assert files.download(environment=workspace, path="/notes.md") == b"hello\n"


def test_uploads_land_in_the_workspace_and_the_next_run_sees_them(client, workspace, script):
    files = client.environments.files
    done = files.upload(environment=workspace, path="in/b.txt", file=b"uploaded")
    assert [f.path for f in done.files] == ["in/b.txt"]
    assert files.download(environment=workspace, path="in/b.txt") == b"uploaded"
    files.upload(environment=workspace, path="in/b.txt", file=b"again", overwrite=True)
    assert files.download(environment=workspace, path="in/b.txt") == b"again"
    unpacked = files.upload(
        environment=workspace,
        path="unpacked",
        file=archive({"x.txt": b"x", "sub/y.txt": b"yy"}),
        extract=True,
    )
    assert sorted(f.path for f in unpacked.files) == ["unpacked/sub/y.txt", "unpacked/x.txt"]
    model = script("files-reader", [call("read_file", path="unpacked/sub/y.txt"), {"text": "ok"}])
    assert results(agent_run(client, model, environment=workspace)) == ["yy"]


def test_a_file_is_not_replaced_unless_asked(stack, api_key, workspace):
    with http(stack, api_key) as api:
        started = start(api, workspace, "notes.md", b"clobbered")
        finished = api.post(
            started,
            content=b"clobbered",
            headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"},
        )
        assert finished.status_code == 409, finished.text
        assert "already exists" in finished.json()["error"]["message"]
        assert api.get(f"/environments/{workspace}/files/notes.md?alt=media").text == "hello\n"


def start(api: httpx.Client, env: str, path: str, data: bytes, **query: str) -> str:
    """A resumable upload started as the SDK starts it; the URL its chunks go to."""
    started = api.put(
        f"{api.base_url.copy_with(path='/upload/v1beta')}/environments/{env}/files/{path}",
        params=query,
        headers={
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(len(data)),
            "X-Goog-Upload-Header-Content-Type": "application/octet-stream",
        },
    )
    assert started.status_code == 200, started.text
    return started.headers["X-Goog-Upload-URL"]


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("../../../../etc/passwd", (400, 404)),  # a client may resolve the dots itself
        ("%2e%2e/%2e%2e/etc/passwd", (400,)),
        ("leak", (400,)),  # a symlink to /etc/passwd, left by the run
        ("etc/passwd", (400,)),  # through a symlinked directory
        ("nothing-here", (404,)),
    ],
)
def test_nothing_outside_the_workspace_is_readable(stack, api_key, workspace, path, statuses):
    with http(stack, api_key) as api:
        answer = api.get(f"/environments/{workspace}/files/{path}", params={"alt": "media"})
        assert answer.status_code in statuses, answer.text
        assert "root:" not in answer.text


def test_archives_that_would_escape_or_explode_are_refused_whole(stack, api_key, workspace):
    evil = archive({"fine.txt": b"ok", "../escaped.txt": b"no"})
    bomb = archive({"zeros.bin": b"\0" * (300 * 1024 * 1024)})  # 300 MiB unpacked, ~300 KiB
    with http(stack, api_key) as api:
        for data, expected in ((evil, 400), (bomb, 413)):
            url = start(api, workspace, "boxes", data, extract="true")
            answer = api.post(
                url,
                content=data,
                headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"},
            )
            assert answer.status_code == expected, answer.text
        listed = api.get(f"/environments/{workspace}/files/", params={"recursive": "true"})
        assert not any(f["path"].startswith("boxes") for f in listed.json()["files"])
        too_big = api.put(
            f"{api.base_url.copy_with(path='/upload/v1beta')}/environments/{workspace}/files/big",
            headers={
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": str(10**10),
                "X-Goog-Upload-Header-Content-Type": "application/octet-stream",
            },
        )
        assert too_big.status_code == 413, too_big.text


def test_files_of_an_unknown_environment_are_a_404(stack, api_key):
    with http(stack, api_key) as api:
        for path in ("/environments/env-nosuch/files/", "/environments/%2e%2e/files/x"):
            assert api.get(path).status_code == 404
