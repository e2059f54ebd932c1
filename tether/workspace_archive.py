"""A run's workspace as a tar.gz: checked when the agent uploads it, read when a client asks.

The archive comes from the sandbox, so it is untrusted: it must unpack, stay within bounds
once unpacked, and name only relative paths inside the workspace. Pure; CPU-bound, so the
gateway runs these in a thread.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import PurePosixPath

UNPACKED_LIMIT = 64 * 1024 * 1024
"""The most the files of one archive may hold once unpacked (the agent sends at most 10 MiB)."""
MEMBER_LIMIT = 10_000


class InvalidArchive(ValueError):
    """Not a readable tar.gz, too large unpacked, or a member outside the workspace."""


def check(data: bytes) -> int:
    """Refuse what is not a readable tar.gz within the limits; the number of files in it."""
    return sum(1 for member in _members(data) if member.isfile())


def files(data: bytes) -> list[dict[str, int | str]]:
    """The regular files of the archive, with their sizes."""
    return [{"path": m.name, "bytes": m.size} for m in _members(data) if m.isfile()]


def read(data: bytes, path: str) -> bytes | None:
    """One regular file's content, or None if the archive has no such file."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in _checked(tar):
                if member.name == path and member.isfile():
                    extracted = tar.extractfile(member)
                    return extracted.read() if extracted else None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise InvalidArchive(f"the workspace archive cannot be read: {error}") from error
    return None


def _members(data: bytes) -> list[tarfile.TarInfo]:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            return list(_checked(tar))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise InvalidArchive(f"the workspace archive is not a readable tar.gz: {error}") from error


def _checked(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    unpacked = 0
    for count, member in enumerate(tar, start=1):
        if count > MEMBER_LIMIT:
            raise InvalidArchive(f"the workspace archive has more than {MEMBER_LIMIT} entries")
        parts = PurePosixPath(member.name).parts
        if member.name.startswith("/") or ".." in parts:
            raise InvalidArchive(
                f"the workspace archive names {member.name!r}: every path must be relative "
                "and stay inside the workspace"
            )
        unpacked += member.size if member.isfile() else 0
        if unpacked > UNPACKED_LIMIT:
            raise InvalidArchive(
                f"the workspace archive holds more than {UNPACKED_LIMIT} bytes unpacked"
            )
        yield member
