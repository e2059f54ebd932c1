"""An Environment's files server over real HTTP: listing, download and upload of a workspace that
untrusted code wrote, confined to it, and archives that would escape or explode refused whole."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import io
import os
import sys
import tarfile
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer, unused_port
from yarl import URL

from tether.sandbox import files_server
from tether.sandbox.files_server import create_app

TOKEN = "files-token-123"


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "workspace"
    root.mkdir()
    return root


@pytest.fixture
def outside(tmp_path):
    """A directory next to the workspace, which nothing may reach."""
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "secret.txt").write_text("the gateway's secret")
    return secret


@pytest.fixture
async def files(root):
    server = TestServer(create_app(root, TOKEN), host="127.0.0.1")
    client = TestClient(server, headers={"Authorization": f"Bearer {TOKEN}"})
    await client.start_server()
    yield client
    await client.close()


def raw(path: str) -> URL:
    """A URL sent exactly as written: no dot segment or escape is normalised on the way."""
    return URL(path, encoded=True)


def tree(root) -> set[str]:
    """Every path in the workspace, links not followed."""
    found = set()
    for top, dirs, names in os.walk(root):
        for name in dirs + names:
            found.add(os.path.relpath(os.path.join(top, name), root))
    return found


def archive(members: dict[str, bytes | tarfile.TarInfo], mode: str = "w:gz") -> bytes:
    """A tar of files (bytes), or of members given as they are (links, devices, directories)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members.items():
            if isinstance(data, tarfile.TarInfo):
                data.name = name
                tar.addfile(data)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def member(kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo()
    info.type, info.linkname = kind, target
    return info


async def test_every_request_needs_the_token(root):
    (root / "a.txt").write_text("a")
    client = TestClient(TestServer(create_app(root, TOKEN), host="127.0.0.1"))
    await client.start_server()
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            for answer in (
                await client.get("/list/", headers=headers),
                await client.get("/content/a.txt", headers=headers),
                await client.put("/content/b.txt", data=b"b", headers=headers),
            ):
                assert answer.status == 401
                assert list(await answer.json()) == ["error"]
        assert not (root / "b.txt").exists()
        health = await client.get("/healthz")
        assert (health.status, await health.json()) == (200, {"ok": True})
        good = await client.get("/list/", headers={"Authorization": f"Bearer {TOKEN}"})
        assert good.status == 200
    finally:
        await client.close()


async def test_the_root_is_listed_in_path_order_with_each_entrys_details(files, root):
    (root / "notes.md").write_text("hello\n")
    (root / "data").mkdir()
    (root / "data" / "prices.csv").write_text("a,1\n")
    (root / "blob").write_bytes(b"\0" * 10)
    answer = await files.get("/list/")
    assert answer.status == 200
    listed = await answer.json()
    assert list(listed) == ["files"]
    assert [f["path"] for f in listed["files"]] == ["blob", "data", "notes.md"]
    blob, data, notes = listed["files"]
    assert set(notes) == {"name", "path", "type", "size_bytes", "mime_type", "created", "modified"}
    assert (notes["name"], notes["type"], notes["size_bytes"]) == ("notes.md", "file", 6)
    assert notes["mime_type"] == "text/markdown"
    assert blob["mime_type"] == "application/octet-stream"
    assert data == {
        "name": "data",
        "path": "data",
        "type": "directory",
        "created": data["created"],
        "modified": data["modified"],
    }
    modified = dt.datetime.fromisoformat(notes["modified"].replace("Z", "+00:00"))
    assert notes["modified"].endswith("Z")
    assert abs(modified.timestamp() - (root / "notes.md").stat().st_mtime) < 0.001
    assert (await (await files.get("/list")).json())["error"]  # the route needs its slash


async def test_a_directory_and_a_single_file_are_listed(files, root):
    (root / "out" / "deep").mkdir(parents=True)
    (root / "out" / "deep" / "a.txt").write_text("data\n")
    (root / "out" / "b.json").write_text("{}")
    nested = await (await files.get("/list/out")).json()
    assert [(f["path"], f["type"]) for f in nested["files"]] == [
        ("out/b.json", "file"),
        ("out/deep", "directory"),
    ]
    [entry] = (await (await files.get("/list/out/deep/a.txt")).json())["files"]
    assert (entry["name"], entry["path"], entry["size_bytes"]) == ("a.txt", "out/deep/a.txt", 5)
    assert entry["mime_type"] == "text/plain"
    missing = await files.get("/list/out/nothing")
    assert (missing.status, await missing.json()) == (404, {"error": "out/nothing does not exist"})


async def test_a_recursive_listing_of_the_root_counts_the_workspace(files, root):
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "c.txt").write_text("ccc")
    (root / "a" / "x.txt").write_text("x")
    (root / "a-z.txt").write_text("zz")
    listed = await (await files.get("/list/", params={"recursive": "true"})).json()
    assert [f["path"] for f in listed["files"]] == ["a", "a/b", "a/b/c.txt", "a/x.txt", "a-z.txt"]
    assert listed["totals"] == {"file_count": 3, "size_bytes": 6}
    below = await (await files.get("/list/a", params={"recursive": "true"})).json()
    assert [f["path"] for f in below["files"]] == ["a/b", "a/b/c.txt", "a/x.txt"]
    assert "totals" not in below
    flat = await (await files.get("/list/", params={"recursive": "false"})).json()
    assert [f["path"] for f in flat["files"]] == ["a", "a-z.txt"]


async def test_listings_are_paged_with_the_tokens_the_server_issues(files, root):
    for i in range(7):
        (root / f"f{i}.txt").write_text("x" * i)
    seen, token, pages = [], None, 0
    while True:
        params = {"page_size": "3", "recursive": "true"} | ({"page_token": token} if token else {})
        page = await (await files.get("/list/", params=params)).json()
        seen += [f["path"] for f in page["files"]]
        pages += 1
        assert page["totals"] == {"file_count": 7, "size_bytes": 21}
        if "next_page_token" not in page:
            break
        token = page["next_page_token"]
    assert (seen, pages) == ([f"f{i}.txt" for i in range(7)], 3)
    for params in (
        {"page_size": "0"},
        {"page_size": "1001"},
        {"page_size": "many"},
        {"page_token": "-1"},
        {"page_token": "abc"},
        {"recursive": "yes"},
    ):
        answer = await files.get("/list/", params=params)
        assert answer.status == 400, params
        assert list(await answer.json()) == ["error"]


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("{route}/%2e%2e/x", "../x"),
        ("{route}/..%2F..%2Fx", "../../x"),
        ("{route}/a/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "a/../../../etc/passwd"),
        ("{route}//workspace/%2e%2e/etc/passwd", "/workspace/../etc/passwd"),
    ],
)
@pytest.mark.parametrize("route", ["/list", "/content"])
async def test_paths_cannot_leave_the_workspace(files, root, route, url, path):
    (root / "a").mkdir()
    answer = await files.get(raw(url.format(route=route)))
    assert answer.status == 400
    assert await answer.json() == {"error": f"{path} is outside the workspace"}
    put = await files.put(raw(url.format(route="/content")), data=b"escaped")
    assert put.status == 400
    assert tree(root) == {"a"}


async def test_a_dot_segment_sent_as_it_is_is_refused(files, root):
    """Clients remove "/../" before sending; a hostile one need not."""
    reader, writer = await asyncio.open_connection("127.0.0.1", files.port)
    writer.write(
        f"GET /content/../x HTTP/1.1\r\nHost: files\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    answer = await reader.read()
    writer.close()
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400")
    assert body == b'{"error": "../x is outside the workspace"}'


async def test_the_workspace_prefixes_and_a_leading_slash_name_its_top(files, root):
    (root / "notes.md").write_text("hello\n")
    for url in ("/content/notes.md", "/content//notes.md", "/content/workspace/notes.md"):
        answer = await files.get(raw(url))
        assert (answer.status, await answer.read()) == (200, b"hello\n"), url
    listed = await (await files.get(raw("/list//workspace/"))).json()
    assert [f["path"] for f in listed["files"]] == ["notes.md"]
    # An absolute path is the workspace's own: the host's /etc/passwd is never what it names.
    answer = await files.get(raw("/content//etc/passwd"))
    assert answer.status == 404
    assert "root:" not in await answer.text()


async def test_malformed_paths_are_refused(files):
    nul = await files.get(raw("/content/a%00b"))
    assert (nul.status, await nul.json()) == (400, {"error": "a path may not contain NUL bytes"})
    long = await files.get("/list/" + "a/" * 2500)
    assert long.status == 400
    assert "at most 4096" in (await long.json())["error"]
    too_long_a_name = await files.get("/content/" + "n" * 300)
    assert too_long_a_name.status in (400, 404)


async def test_a_file_is_downloaded_with_its_type(files, root):
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(os.urandom(1024 * 1024 + 7))
    (root / "data" / "t.json").write_text("{}")
    answer = await files.get("/content/data/big.bin")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert await answer.read() == (root / "data" / "big.bin").read_bytes()
    typed = await files.get("/content/data/t.json")
    assert typed.headers["Content-Type"] == "application/json"
    for path in ("data", "", "data/none.txt"):
        answer = await files.get(f"/content/{path}")
        assert answer.status == 404, path
        assert list(await answer.json()) == ["error"]


async def test_a_symlink_out_is_neither_read_nor_followed(files, root):
    (root / "leak").symlink_to("/etc/passwd")
    (root / "notes.md").write_text("hi")
    for url in ("/content/leak", "/list/leak"):
        answer = await files.get(url)
        assert answer.status == 400
        assert await answer.json() == {"error": "leak is outside the workspace"}
    listed = await (await files.get("/list/", params={"recursive": "true"})).json()
    link = next(f for f in listed["files"] if f["path"] == "leak")
    assert (link["type"], link["size_bytes"]) == ("file", len("/etc/passwd"))
    assert listed["totals"] == {"file_count": 1, "size_bytes": 2}
    assert "root:" not in str(listed)


async def test_a_symlink_inside_the_workspace_is_read_where_it_leads(files, root):
    (root / "real.txt").write_text("real")
    (root / "alias").symlink_to("real.txt")
    answer = await files.get("/content/alias")
    assert (answer.status, await answer.text()) == (200, "real")


async def test_a_symlinked_directory_out_is_not_descended(files, root, outside):
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "etc").symlink_to("/etc", target_is_directory=True)
    listed = await (await files.get("/list/", params={"recursive": "true"})).json()
    assert [(f["path"], f["type"]) for f in listed["files"]] == [("etc", "file"), ("out", "file")]
    assert listed["totals"] == {"file_count": 0, "size_bytes": 0}
    for url in ("/list/out", "/content/out/secret.txt", "/content/etc/passwd", "/list/etc"):
        answer = await files.get(url)
        assert answer.status == 400, url
        assert "outside the workspace" in (await answer.json())["error"]
    put = await files.put("/content/out/planted.txt", data=b"x")
    assert put.status == 400
    assert sorted(os.listdir(outside)) == ["secret.txt"]


async def test_a_loop_of_symlinks_is_refused(files, root):
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    answer = await files.get("/content/a")
    assert answer.status == 400
    assert "loop" in (await answer.json())["error"]
    listed = await (await files.get("/list/", params={"recursive": "true"})).json()
    assert [f["path"] for f in listed["files"]] == ["a", "b"]


async def test_a_file_is_uploaded_with_its_parents_in_chunks(files, root):
    async def chunks():
        for _ in range(4):
            yield b"row\n" * 1000

    answer = await files.put("/content/reports/2024/q1.csv", data=chunks())
    assert answer.status == 200
    [entry] = (await answer.json())["files"]
    assert (entry["path"], entry["name"]) == ("reports/2024/q1.csv", "q1.csv")
    assert (entry["size_bytes"], entry["mime_type"]) == (16000, "text/csv")
    assert (root / "reports" / "2024" / "q1.csv").read_bytes() == b"row\n" * 4000
    assert tree(root) == {"reports", "reports/2024", "reports/2024/q1.csv"}


async def test_an_existing_file_is_replaced_only_when_asked(files, root):
    (root / "notes.md").write_text("original")
    refused = await files.put("/content/notes.md", data=b"clobbered")
    assert refused.status == 409
    assert await refused.json() == {
        "error": "notes.md already exists; upload with overwrite=true to replace it"
    }
    assert (root / "notes.md").read_text() == "original"
    replaced = await files.put("/content/notes.md", params={"overwrite": "true"}, data=b"new")
    assert replaced.status == 200
    assert (await replaced.json())["files"][0]["size_bytes"] == 3
    assert (root / "notes.md").read_text() == "new"
    assert tree(root) == {"notes.md"}


async def test_an_upload_never_replaces_a_directory_or_goes_through_a_file(files, root):
    (root / "dir").mkdir()
    (root / "file").write_text("f")
    for url, message in (
        ("/content/dir", "dir is a directory"),
        ("/content/", ". is a directory"),
        ("/content/file/child.txt", "file is not a directory"),
    ):
        answer = await files.put(url, params={"overwrite": "true"}, data=b"x")
        assert (answer.status, await answer.json()) == (409, {"error": message}), url
    assert tree(root) == {"dir", "file"}


async def test_an_upload_over_the_limit_leaves_nothing(files, root, monkeypatch):
    monkeypatch.setattr(files_server, "UPLOAD_LIMIT", 1000)

    async def endless():
        for _ in range(100):
            yield b"x" * 100

    for data in (b"x" * 1001, endless()):  # announced by its length, and found while streaming
        answer = await files.put("/content/deep/big.bin", data=data)
        assert answer.status == 413
        assert await answer.json() == {"error": "an upload is at most 1000 bytes"}
    assert tree(root) == set()
    fits = await files.put("/content/deep/small.bin", data=b"x" * 1000)
    assert fits.status == 200


async def test_an_archive_is_unpacked_into_a_directory(files, root):
    (root / "boxes").mkdir()
    (root / "boxes" / "kept.txt").write_text("kept")
    folder = member(tarfile.DIRTYPE)
    data = archive({"./x.txt": b"x", "sub": folder, "sub/y.txt": b"yy", "empty": member(b"5")})
    answer = await files.put("/content/boxes", params={"extract": "true"}, data=data)
    assert answer.status == 200, await answer.text()
    written = (await answer.json())["files"]
    assert [(f["path"], f["size_bytes"]) for f in written] == [
        ("boxes/sub/y.txt", 2),
        ("boxes/x.txt", 1),
    ]
    assert (root / "boxes" / "sub" / "y.txt").read_bytes() == b"yy"
    assert (root / "boxes" / "empty").is_dir()
    assert (root / "boxes" / "kept.txt").read_text() == "kept"
    plain = archive({"p.txt": b"plain"}, mode="w")
    answer = await files.put("/content/new/dir", params={"extract": "true"}, data=plain)
    assert [f["path"] for f in (await answer.json())["files"]] == ["new/dir/p.txt"]
    xz = archive({"z.txt": b"z"}, mode="w:xz")
    answer = await files.put("/content/", params={"extract": "true"}, data=xz)
    assert [f["path"] for f in (await answer.json())["files"]] == ["z.txt"]
    assert not any(name.startswith(".tether-staging") for name in os.listdir(root))


@pytest.mark.parametrize(
    ("members", "refused"),
    [
        ({"fine.txt": b"ok", "../evil.txt": b"no"}, "../evil.txt leads outside"),
        ({"fine.txt": b"ok", "a/../../evil.txt": b"no"}, "a/../../evil.txt leads outside"),
        ({"fine.txt": b"ok", "/tmp/evil.txt": b"no"}, "/tmp/evil.txt has an absolute path"),
        ({"fine.txt": b"ok", "link": member(tarfile.SYMTYPE, "/etc/passwd")}, "link is a link"),
        ({"fine.txt": b"ok", "inner": member(tarfile.SYMTYPE, "fine.txt")}, "inner is a link"),
        ({"fine.txt": b"ok", "hard": member(tarfile.LNKTYPE, "fine.txt")}, "hard is a link"),
        ({"fine.txt": b"ok", "pipe": member(tarfile.FIFOTYPE)}, "pipe is a device"),
        ({"fine.txt": b"ok", "tty": member(tarfile.CHRTYPE)}, "tty is a device"),
    ],
)
async def test_an_escaping_archive_is_refused_whole(root, files, tmp_path, members, refused):
    (root / "kept.txt").write_text("kept")
    data = archive(members)
    answer = await files.put("/content/boxes", params={"extract": "true"}, data=data)
    assert answer.status == 400
    assert refused in (await answer.json())["error"]
    assert tree(root) == {"kept.txt"}
    assert not (tmp_path / "evil.txt").exists()


async def test_an_archive_bomb_is_refused_whole(files, root, monkeypatch):
    monkeypatch.setattr(files_server, "EXTRACT_LIMIT", 1024 * 1024)
    bomb = archive({"fine.txt": b"ok", "zeros.bin": b"\0" * (4 * 1024 * 1024)})
    assert len(bomb) < 32 * 1024
    answer = await files.put("/content/boxes", params={"extract": "true"}, data=bomb)
    assert answer.status == 413
    assert await answer.json() == {"error": "the archive unpacks to more than 1048576 bytes"}
    # Many members, each under the limit, that add up past it.
    many = archive({f"part{i}.bin": b"\0" * (300 * 1024) for i in range(4)})
    answer = await files.put("/content/boxes", params={"extract": "true"}, data=many)
    assert answer.status == 413
    assert tree(root) == set()


async def test_a_header_too_large_to_hold_is_refused_before_it_is_read(files, root, monkeypatch):
    monkeypatch.setattr(files_server, "EXTRACT_LIMIT", 1024 * 1024)
    monkeypatch.setattr(files_server, "MEMBER_LIMIT", 10)
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, 16 * 1024 * 1024
    body = header.tobuf(tarfile.USTAR_FORMAT) + b"\0" * header.size
    answer = await files.put(
        "/content/boxes", params={"extract": "true"}, data=gzip.compress(body, compresslevel=1)
    )
    assert answer.status == 413
    assert tree(root) == set()


async def test_an_archive_of_too_many_members_is_refused(files, root, monkeypatch):
    monkeypatch.setattr(files_server, "MEMBER_LIMIT", 3)
    data = archive({f"{i}.txt": b"x" for i in range(4)})
    answer = await files.put("/content/", params={"extract": "true"}, data=data)
    assert answer.status == 413
    assert await answer.json() == {"error": "an archive holds at most 3 members"}
    assert tree(root) == set()


async def test_an_archive_replaces_no_file_unasked(files, root):
    (root / "boxes").mkdir()
    (root / "boxes" / "x.txt").write_text("mine")
    (root / "boxes" / "sub").write_text("a file where the archive has a directory")
    data = archive({"new.txt": b"new", "x.txt": b"theirs"})
    answer = await files.put("/content/boxes", params={"extract": "true"}, data=data)
    assert (answer.status, await answer.json()) == (
        409,
        {"error": "boxes/x.txt already exists; upload with overwrite=true to replace it"},
    )
    assert tree(root) == {"boxes", "boxes/x.txt", "boxes/sub"}
    replaced = await files.put(
        "/content/boxes", params={"extract": "true", "overwrite": "true"}, data=data
    )
    assert replaced.status == 200
    assert (root / "boxes" / "x.txt").read_text() == "theirs"
    through = archive({"sub/y.txt": b"y"})
    answer = await files.put(
        "/content/boxes", params={"extract": "true", "overwrite": "true"}, data=through
    )
    assert (answer.status, await answer.json()) == (409, {"error": "boxes/sub is not a directory"})
    into_a_file = await files.put("/content/boxes/x.txt", params={"extract": "true"}, data=data)
    assert into_a_file.status == 409


@pytest.mark.parametrize("data", [b"", b"not a tar at all" * 100, gzip.compress(b"x" * 1000)])
async def test_a_body_that_is_not_a_tar_is_refused(files, root, data):
    answer = await files.put("/content/boxes", params={"extract": "true"}, data=data)
    assert answer.status == 400
    assert list(await answer.json()) == ["error"]
    assert tree(root) == set()


async def test_a_truncated_archive_is_refused(files, root):
    data = archive({"a.bin": os.urandom(100_000)})
    answer = await files.put("/content/boxes", params={"extract": "true"}, data=data[:-5000])
    assert answer.status == 400
    assert tree(root) == set()


async def test_odd_names_are_listed_and_served(files, root):
    odd = ["new\nline.txt", "spaces and ünïcödé.txt", "data:text,html", "-dash"]
    for name in odd:
        (root / name).write_text(name)
    os.mkfifo(root / "fifo")
    os.utime(root / "-dash", (2**40, 2**40))  # far in the future (as far as the filesystem goes)
    listed = await (await files.get("/list/", params={"recursive": "true"})).json()
    assert sorted(f["name"] for f in listed["files"]) == sorted([*odd, "fifo"])
    dash = next(f for f in listed["files"] if f["name"] == "-dash")
    assert dt.datetime.fromisoformat(dash["modified"].replace("Z", "+00:00")).year > 2400
    assert next(f for f in listed["files"] if f["name"] == "data:text,html")["mime_type"] == (
        "application/octet-stream"
    )
    for name in odd:
        answer = await files.get(URL.build(path=f"/content/{name}"))
        assert (answer.status, await answer.text()) == (200, name), name
    fifo = await asyncio.wait_for(files.get("/content/fifo"), 5)
    assert fifo.status == 404


async def test_the_server_exits_after_its_idle_time_and_not_while_used(root):
    """Through `python -m`, as the files pod runs it: requests keep it up, the probe does not."""
    port = unused_port()
    environ = {
        **os.environ,
        "TETHER_FILES_TOKEN": TOKEN,
        "TETHER_FILES_PORT": str(port),
        "TETHER_FILES_IDLE_SECONDS": "1",
        "TETHER_WORKSPACE": str(root),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tether.sandbox.files_server", env=environ
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    async with http.get(f"{base}/healthz") as answer:
                        if answer.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    assert time.monotonic() < deadline, "the files server did not start"
                    await asyncio.sleep(0.1)
            used_until = time.monotonic() + 2.5
            while time.monotonic() < used_until:
                async with http.get(f"{base}/list/", headers=headers) as answer:
                    assert answer.status == 200
                await asyncio.sleep(0.3)
            assert process.returncode is None
            stopped = time.monotonic()
            while process.returncode is None and time.monotonic() - stopped < 10:
                try:
                    async with http.get(f"{base}/healthz"):
                        pass
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.2)
        assert await asyncio.wait_for(process.wait(), 5) == 0
        assert 0.8 < time.monotonic() - stopped < 5
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
