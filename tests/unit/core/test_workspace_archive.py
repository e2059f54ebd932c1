"""A workspace archive from a sandbox is untrusted: checked at upload, read without surprises."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from tether import workspace_archive
from tether.workspace_archive import InvalidArchive


def archive(*members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_good_archive_lists_and_reads_its_files():
    data = archive(("notes/a.txt", b"hello"), ("b.csv", b"x,1\n"))
    assert workspace_archive.check(data) == 2
    assert workspace_archive.files(data) == [
        {"path": "notes/a.txt", "bytes": 5},
        {"path": "b.csv", "bytes": 4},
    ]
    assert workspace_archive.read(data, "notes/a.txt") == b"hello"
    assert workspace_archive.read(data, "missing.txt") is None


@pytest.mark.parametrize(
    "data",
    [b"this is not a tar.gz", gzip.compress(b"not a tar inside"), archive(("a", b"x" * 100))[:40]],
    ids=["plain bytes", "gzip of junk", "truncated"],
)
def test_what_is_not_a_readable_tar_gz_is_refused(data):
    with pytest.raises(InvalidArchive):
        workspace_archive.check(data)
    with pytest.raises(InvalidArchive):
        workspace_archive.files(data)


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.txt", "a/../../b"])
def test_members_outside_the_workspace_are_refused(name):
    with pytest.raises(InvalidArchive, match="every path must be relative"):
        workspace_archive.check(archive(("fine.txt", b"1"), (name, b"2")))


def test_an_archive_too_large_unpacked_is_refused(monkeypatch):
    monkeypatch.setattr(workspace_archive, "UNPACKED_LIMIT", 1000)
    with pytest.raises(InvalidArchive, match="more than 1000 bytes unpacked"):
        workspace_archive.check(archive(("a", b"0" * 600), ("b", b"0" * 600)))
