"""An Environment's files pod: the workspace volume served to the gateway alone.

`python -m tether.sandbox.files_server` runs in the pod that mounts the volume at /workspace; every
request but the probe's carries the pod's own bearer token:

    GET /healthz                          {"ok": true} (no token: the readiness probe)
    GET /list/{path}?recursive=&page_size=&page_token=
                                          {"files": [entry...], "next_page_token"?, "totals"?}
    GET /content/{path}                   the bytes of a regular file
    PUT /content/{path}?overwrite=&extract=
                                          {"files": [entry...]}: a file, or a tar unpacked

The workspace was written by untrusted code, so nothing here follows a symbolic link: a path is
resolved and confined first, and then opened one directory at a time without following links, so
a link swapped in after the check leads nowhere either. Uploads are untrusted too: bodies and
archives are metered while they stream, and staged, so a refused one leaves nothing behind.
Errors are {"error": message} with their status.
"""

from __future__ import annotations

import asyncio
import bz2
import contextlib
import datetime as dt
import errno
import gzip
import hmac
import logging
import lzma
import mimetypes
import os
import secrets
import shutil
import stat
import tarfile
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

from aiohttp import hdrs, web

from .paths import ToolError, resolve

UPLOAD_LIMIT = 64 * 1024 * 1024
"""The most an upload's body may weigh."""
EXTRACT_LIMIT = 256 * 1024 * 1024
"""The most an archive may unpack to, all its files together."""
MEMBER_LIMIT = 10_000
"""The most members an archive may hold."""
HEADER_ALLOWANCE = 4096
"""What each member's headers (pax, GNU long names) may add to the unpacked stream."""
PATH_LIMIT = 4096
PAGE_SIZE = 100
PAGE_LIMIT = 1000
CHUNK = 256 * 1024
STAGING = ".tether-staging-"
"""Scratch directories in the workspace root: uploads land there first, on the same volume, so
that moving them in is a rename, and a refused one is removed whole."""
_DATA_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
"""tarfile's own check of each member, where this Python has it (3.11.4 and later; Debian
bookworm's 3.11.2 has not): a second opinion after _member's, which decides alone there."""
_FILTER_ERRORS = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()
BODY = "body"
TREE = "tree"

log = logging.getLogger(__name__)


class FilesError(Exception):
    """A refusal the gateway passes on: its status and a message a user can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Activity:
    """When the last request ended and how many are running; the probe's /healthz is not one."""

    def __init__(self) -> None:
        self.running = 0
        self.last = time.monotonic()

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self.last = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self.running else time.monotonic() - self.last


ROOT = web.AppKey("root", Path)
TOKEN = web.AppKey("token", str)
ACTIVITY = web.AppKey("activity", Activity)
MOVING = web.AppKey("moving", asyncio.Lock)


# Paths


def _locate(root: Path, path: str) -> Path:
    """Where `path` really is in the workspace; 400 if it is malformed or leads outside."""
    if "\x00" in path:
        raise FilesError(400, "a path may not contain NUL bytes")
    if len(path) > PATH_LIMIT:
        raise FilesError(400, f"a path is at most {PATH_LIMIT} characters")
    # The SDK's paths are the workspace's: "/notes.md", "workspace/notes.md" and
    # "/workspace/notes.md" all name notes.md at its top.
    relative = path.lstrip("/")
    if relative == "workspace" or relative.startswith("workspace/"):
        relative = relative.removeprefix("workspace").lstrip("/")
    try:
        return resolve(root, relative)
    except ToolError:
        raise FilesError(400, f"{path} is outside the workspace") from None
    except RuntimeError:  # Path.resolve on a loop of symbolic links, left by the workspace's code
        raise FilesError(400, f"{path} leads into a loop of symbolic links") from None


_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_beneath(base: Path, parts: tuple[str, ...], create: bool = False) -> int:
    """A descriptor of the directory base/parts, opened a component at a time and never through
    a symbolic link (created when missing if `create`)."""
    fd = os.open(base, _DIRECTORY)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
            child = os.open(part, _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lstat(base: Path, parts: tuple[str, ...]) -> os.stat_result:
    if not parts:
        return os.stat(base)
    parent = _open_beneath(base, parts[:-1])
    try:
        return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


class _Destination:
    """Where an upload may go: 409 if it would replace a directory, put a file where a
    directory must be, or replace a file without overwrite=true."""

    def __init__(self, root: Path, overwrite: bool) -> None:
        self.root, self.overwrite = root, overwrite
        self.kinds: dict[tuple[str, ...], str] = {(): "directory"}

    def kind(self, parts: tuple[str, ...]) -> str:
        """ "missing", "directory" or "file" (anything else, a symbolic link included)."""
        for depth in range(1, len(parts) + 1):  # not recursive: archives nest deeper than Python
            prefix = parts[:depth]
            if prefix not in self.kinds:
                self.kinds[prefix] = (
                    self._look(prefix) if self.kinds[prefix[:-1]] == "directory" else "missing"
                )
        return self.kinds[parts]

    def _look(self, parts: tuple[str, ...]) -> str:
        try:
            mode = _lstat(self.root, parts).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        return "directory" if stat.S_ISDIR(mode) else "file"

    def directory(self, parts: tuple[str, ...]) -> None:
        self.kind(parts)
        for depth in range(1, len(parts) + 1):
            if self.kinds[parts[:depth]] == "file":
                raise FilesError(409, f"{'/'.join(parts[:depth])} is not a directory")

    def file(self, parts: tuple[str, ...]) -> None:
        path = "/".join(parts) or "."
        if not parts:
            raise FilesError(409, f"{path} is a directory")
        self.directory(parts[:-1])
        kind = self.kind(parts)
        if kind == "directory":
            raise FilesError(409, f"{path} is a directory")
        if kind == "file" and not self.overwrite:
            raise FilesError(
                409, f"{path} already exists; upload with overwrite=true to replace it"
            )


# Entries


def _timestamp(seconds: float) -> str:
    try:
        moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):  # a time set off the calendar by the workspace
        moment = (dt.datetime.max if seconds > 0 else dt.datetime.min).replace(tzinfo=dt.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


_ENCODINGS = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def _mime(name: str) -> str:
    # "./" keeps a name such as "data:text/html,x" from being read as a URL with a scheme.
    kind, encoding = mimetypes.guess_type("./" + name)
    if encoding:  # a.tar.gz is gzip on the wire, whatever it holds
        return _ENCODINGS.get(encoding, "application/octet-stream")
    return kind or "application/octet-stream"


def _entry(path: str, st: os.stat_result) -> dict:
    name = path.rsplit("/", 1)[-1]
    # Linux's stat has no birth time; ctime (the last change of the inode) is the nearest.
    times = {
        "created": _timestamp(getattr(st, "st_birthtime", st.st_ctime)),
        "modified": _timestamp(st.st_mtime),
    }
    if stat.S_ISDIR(st.st_mode):
        return {"name": name, "path": path, "type": "directory", **times}
    return {
        "name": name,
        "path": path,
        "type": "file",  # a symbolic link is one too, of its own size: it is never followed
        "size_bytes": st.st_size,
        "mime_type": _mime(name),
        **times,
    }


def _children(root: Path, parts: tuple[str, ...]) -> list[tuple[str, os.stat_result]]:
    fd = _open_beneath(root, parts)
    try:
        found = []
        with os.scandir(fd) as entries:
            for entry in entries:
                if not parts and entry.name.startswith(STAGING):
                    continue
                try:
                    found.append((entry.name, entry.stat(follow_symlinks=False)))
                except FileNotFoundError:  # removed while listed
                    continue
    finally:
        os.close(fd)
    return sorted(found, key=lambda child: child[0])


def _walk(
    root: Path, parts: tuple[str, ...], recursive: bool
) -> Iterator[tuple[str, os.stat_result]]:
    """The entries of the directory root/parts in path order (a directory's contents follow it),
    holding one directory's listing per level, so a huge workspace does not fill the pod."""
    stack = [(parts, iter(_children(root, parts)))]
    while stack:
        here, children = stack[-1]
        for name, st in children:
            child = (*here, name)
            path = "/".join(child)
            yield path, st
            if recursive and stat.S_ISDIR(st.st_mode) and len(path) < PATH_LIMIT:
                try:
                    stack.append((child, iter(_children(root, child))))
                except OSError:  # gone, unreadable, or replaced by a link since it was listed
                    continue
                break
        else:
            stack.pop()


def _page(
    root: Path, parts: tuple[str, ...], recursive: bool, offset: int, size: int, totals: bool
) -> dict:
    files: list[dict] = []
    more = False
    count = total = 0
    for index, (path, st) in enumerate(_walk(root, parts, recursive)):
        if index >= offset + size:
            more = True
            if not totals:
                break
        elif index >= offset:
            files.append(_entry(path, st))
        if totals and stat.S_ISREG(st.st_mode):
            count, total = count + 1, total + st.st_size
    page: dict = {"files": files}
    if more:
        page["next_page_token"] = str(offset + size)
    if totals:
        page["totals"] = {"file_count": count, "size_bytes": total}
    return page


# Query parameters


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise FilesError(400, f"{name} must be true or false, not {value!r}")
    return value == "true"


def _number(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query.get(name, str(default))
    if not (value.isascii() and value.isdigit() and low <= int(value) <= high):
        raise FilesError(400, f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return int(value)


# Handlers

routes = web.RouteTableDef()
ANY_PATH = r"{path:[\s\S]*}"
"""Any path, newlines included: the workspace's code may name a file anything."""


@routes.get("/healthz")
async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@routes.get(f"/list/{ANY_PATH}")
async def list_files(request: web.Request) -> web.Response:
    root, path = request.app[ROOT], request.match_info["path"]
    recursive = _flag(request, "recursive")
    size = _number(request, "page_size", PAGE_SIZE, 1, PAGE_LIMIT)
    try:
        offset = _number(request, "page_token", 0, 0, 2**63)
    except FilesError:
        raise FilesError(400, "page_token is not one this server issued") from None
    parts = _locate(root, path).relative_to(root).parts
    try:
        st = _lstat(root, parts)
    except (FileNotFoundError, NotADirectoryError):
        raise FilesError(404, f"{path or '.'} does not exist") from None
    if not stat.S_ISDIR(st.st_mode):
        return web.json_response({"files": [_entry("/".join(parts), st)] if offset == 0 else []})
    totals = recursive and not parts
    page = await asyncio.to_thread(_page, root, parts, recursive, offset, size, totals)
    return web.json_response(page)


@routes.get(f"/content/{ANY_PATH}")
async def get_content(request: web.Request) -> web.StreamResponse:
    root, path = request.app[ROOT], request.match_info["path"]
    parts = _locate(root, path).relative_to(root).parts
    fd = _open_file(root, parts, path or ".")
    try:
        size = os.fstat(fd).st_size
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: _mime(parts[-1])})
        response.content_length = size
        await response.prepare(request)
        try:
            while size > 0:
                chunk = await asyncio.to_thread(os.read, fd, min(CHUNK, size))
                if not chunk:  # it shrank while read: the short body tells the client
                    response.force_close()
                    break
                await response.write(chunk)
                size -= len(chunk)
        except OSError as error:  # the status is sent: all that is left is to hang up
            log.warning("reading %r stopped: %s", path, error)
            response.force_close()
        return response
    finally:
        os.close(fd)


def _open_file(root: Path, parts: tuple[str, ...], shown: str) -> int:
    if not parts:
        raise FilesError(404, f"{shown} is a directory")
    try:
        parent = _open_beneath(root, parts[:-1])
        try:
            # O_NONBLOCK: opening a fifo the workspace's code left must not hang the server.
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(parts[-1], flags, dir_fd=parent)
        finally:
            os.close(parent)
    except (FileNotFoundError, NotADirectoryError):
        raise FilesError(404, f"{shown} does not exist") from None
    except OSError as error:
        if error.errno != errno.ELOOP:  # a link swapped in after `resolve`
            raise
        raise FilesError(404, f"{shown} is not a regular file") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise FilesError(404, f"{shown} is {kind}")
    return fd


@routes.put(f"/content/{ANY_PATH}")
async def put_content(request: web.Request) -> web.Response:
    root, path = request.app[ROOT], request.match_info["path"]
    overwrite, extract = _flag(request, "overwrite"), _flag(request, "extract")
    parts = _locate(root, path).relative_to(root).parts
    if (request.content_length or 0) > UPLOAD_LIMIT:
        raise FilesError(413, f"an upload is at most {UPLOAD_LIMIT} bytes")
    # Refused before the body, which may be large, is read; checked again once it is in.
    destination = _Destination(root, overwrite)
    if extract:
        destination.directory(parts)
    else:
        destination.file(parts)
    async with _staging(root) as staging:
        await _receive(request, staging)
        members = await asyncio.to_thread(_unpack, staging) if extract else None
        # One upload at a time checks its destination and moves in, so two cannot both find a
        # path free; receiving and unpacking, the slow parts, run side by side.
        async with request.app[MOVING]:
            if members is not None:
                written = await asyncio.to_thread(_place, root, staging, parts, overwrite, members)
            else:
                written = [_move_in(root, staging, parts, overwrite)]
    return web.json_response({"files": [_entry(p, st) for p, st in written]})


@contextlib.asynccontextmanager
async def _staging(root: Path) -> AsyncIterator[Path]:
    staging = root / f"{STAGING}{secrets.token_hex(8)}"
    staging.mkdir(mode=0o700)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


async def _receive(request: web.Request, staging: Path) -> None:
    """The body, streamed into staging/body; 413 as soon as it passes UPLOAD_LIMIT."""
    received = 0
    with (staging / BODY).open("xb") as body:
        async for chunk in request.content.iter_chunked(CHUNK):
            received += len(chunk)
            if received > UPLOAD_LIMIT:
                raise FilesError(413, f"an upload is at most {UPLOAD_LIMIT} bytes")
            await asyncio.to_thread(body.write, chunk)


def _move_in(
    root: Path, staging: Path, parts: tuple[str, ...], overwrite: bool
) -> tuple[str, os.stat_result]:
    """staging/body renamed onto root/parts."""
    _Destination(root, overwrite).file(parts)
    parent = _open_beneath(root, parts[:-1], create=True)
    try:
        os.replace(staging / BODY, parts[-1], dst_dir_fd=parent)
        return "/".join(parts), os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


# Archives


class _Metered:
    """The unpacked archive as tarfile reads it, refused past `limit` bytes. tarfile holds some
    headers (pax, GNU long names) whole in memory, so those are metered as well as file data."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.limit, self.position = stream, limit, 0

    def read(self, size: int = -1) -> bytes:
        if size < 0 or self.position + size > self.limit:
            raise FilesError(413, f"the archive unpacks to more than {EXTRACT_LIMIT} bytes")
        try:
            data = self.stream.read(size)
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as error:
            raise FilesError(400, f"the archive cannot be read: {error}") from None
        self.position += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET:
            raise OSError(errno.ESPIPE, "the archive is read from start to end")
        if offset > self.limit:
            raise FilesError(413, f"the archive unpacks to more than {EXTRACT_LIMIT} bytes")
        try:
            self.position = self.stream.seek(offset)
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as error:
            raise FilesError(400, f"the archive cannot be read: {error}") from None
        return self.position

    def tell(self) -> int:
        return self.position


def _decompressed(raw: BinaryIO) -> BinaryIO:
    """The tar inside a gzip, bzip2 or xz file, or the file itself. tarfile.open("r:*") would do
    the same, but then the reads it makes could not be metered."""
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    return raw


def _member(member: tarfile.TarInfo) -> tuple[str, ...]:
    """A member's path inside the target directory; 400 for anything but a plain file or
    directory that stays inside it."""
    name = member.name
    if "\x00" in name or len(name) > PATH_LIMIT:
        raise FilesError(400, f"the archive's member {name[:200]!r} has an unusable name")
    if name.startswith("/"):
        raise FilesError(400, f"the archive's member {name} has an absolute path")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise FilesError(400, f"the archive's member {name} leads outside its directory")
    if member.issym() or member.islnk():
        raise FilesError(400, f"the archive's member {name} is a link; only files are unpacked")
    if not (member.isreg() or member.isdir()):
        raise FilesError(400, f"the archive's member {name} is a device, fifo or other special")
    if not parts and not member.isdir():
        raise FilesError(400, f"the archive's member {name!r} has no name")
    return parts


Members = tuple[dict[tuple[str, ...], None], dict[tuple[str, ...], None]]
"""An unpacked archive's directories and files, in archive order, each once."""


def _unpack(staging: Path) -> Members:
    """staging/body unpacked into staging/tree, whole or not at all: its directories and files."""
    tree = staging / TREE
    tree.mkdir()
    directories: dict[tuple[str, ...], None] = {}
    files: dict[tuple[str, ...], None] = {}
    declared = written = 0
    limit = EXTRACT_LIMIT + MEMBER_LIMIT * HEADER_ALLOWANCE
    with (staging / BODY).open("rb") as raw, _decompressed(raw) as stream:
        try:
            archive = tarfile.open(fileobj=_Metered(stream, limit), mode="r:")  # noqa: SIM115
        except tarfile.TarError as error:
            raise FilesError(400, f"the upload is not a tar archive: {error}") from None
        with archive:
            try:
                for count, member in enumerate(archive, 1):
                    if count > MEMBER_LIMIT:
                        raise FilesError(413, f"an archive holds at most {MEMBER_LIMIT} members")
                    parts = _member(member)
                    declared += member.size if member.isreg() else 0
                    if declared > EXTRACT_LIMIT:
                        raise FilesError(
                            413, f"the archive unpacks to more than {EXTRACT_LIMIT} bytes"
                        )
                    try:
                        archive.extract(member, tree, set_attrs=True, **_DATA_FILTER)
                    except _FILTER_ERRORS:
                        raise FilesError(
                            400,
                            f"the archive's member {member.name} would not be a plain file "
                            "inside its directory",
                        ) from None
                    except OSError as error:
                        if error.errno in (errno.ENOSPC, errno.EDQUOT):
                            raise
                        raise FilesError(
                            400,
                            f"the archive's member {member.name} cannot be unpacked: "
                            f"{error.strerror}",
                        ) from None
                    if member.isdir():
                        directories[parts] = None
                        continue
                    files[parts] = None
                    written += os.lstat(tree.joinpath(*parts)).st_size
                    if written > EXTRACT_LIMIT:
                        raise FilesError(
                            413, f"the archive unpacks to more than {EXTRACT_LIMIT} bytes"
                        )
            except tarfile.TarError as error:
                raise FilesError(400, f"the archive cannot be read: {error}") from None
    return directories, files


def _place(
    root: Path,
    staging: Path,
    parts: tuple[str, ...],
    overwrite: bool,
    members: Members,
) -> list[tuple[str, os.stat_result]]:
    """The archive unpacked in staging/tree moved into root/parts, once no member would replace
    a directory, or a file unasked."""
    directories, files = members
    destination = _Destination(root, overwrite)
    destination.directory(parts)
    for directory in directories:
        destination.directory(parts + directory)
    for file in files:
        destination.file(parts + file)

    os.close(_open_beneath(root, parts, create=True))
    for directory in sorted(directories):
        os.close(_open_beneath(root, parts + directory, create=True))
    written = []
    for file in sorted(files):
        source = _open_beneath(staging / TREE, file[:-1])
        try:
            target = _open_beneath(root, parts + file[:-1], create=True)
            try:
                os.replace(file[-1], file[-1], src_dir_fd=source, dst_dir_fd=target)
                st = os.stat(file[-1], dir_fd=target, follow_symlinks=False)
            finally:
                os.close(target)
        finally:
            os.close(source)
        written.append(("/".join(parts + file), st))
    return written


# The application


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    """Every failure as {"error": message}, never a traceback."""
    try:
        return await handler(request)
    except FilesError as error:
        return web.json_response({"error": error.message}, status=error.status)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return web.json_response({"error": error.reason}, status=error.status)
    except OSError as error:
        status, message = _os_error(error)
        log.warning("%s %s: %s", request.method, request.path, error)
        return web.json_response({"error": message}, status=status)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": "the files server failed"}, status=500)


def _os_error(error: OSError) -> tuple[int, str]:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return 507, "the workspace volume is full"
    if error.errno == errno.ENAMETOOLONG:
        return 400, "a name in the path is too long"
    if error.errno in (errno.EACCES, errno.EPERM):
        return 403, "the workspace's own permissions refuse this"
    return 500, f"the workspace could not be read or written: {error.strerror}"


@web.middleware
async def _authorized(request: web.Request, handler) -> web.StreamResponse:
    if request.path == "/healthz":
        return await handler(request)
    given = request.headers.get(hdrs.AUTHORIZATION, "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, f"Bearer {request.app[TOKEN]}".encode()):
        raise FilesError(401, "this server answers its bearer token only")
    with request.app[ACTIVITY].request():
        return await handler(request)


def _exit_when_idle(seconds: float):
    async def watch(app: web.Application) -> AsyncIterator[None]:
        async def wait() -> None:
            while (left := seconds - app[ACTIVITY].idle_for()) > 0:
                await asyncio.sleep(left)
            log.info("no request for %gs: exiting", seconds)
            raise web.GracefulExit  # out of run_app's loop, which then cleans up and returns

        task = asyncio.create_task(wait())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, web.GracefulExit):
            await task

    return watch


async def _sweep(app: web.Application) -> AsyncIterator[None]:
    """Staging left by a server that was stopped mid-upload."""
    for leftover in app[ROOT].glob(f"{STAGING}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    yield


def create_app(root: Path, token: str, idle_seconds: float | None = None) -> web.Application:
    """The files server of the workspace at `root`, answering `token` only; with idle_seconds,
    the process exits after that long without a request."""
    if not token:
        raise ValueError("the files server needs a token")
    app = web.Application(middlewares=[_errors, _authorized])
    app[ROOT] = root.resolve()
    app[TOKEN] = token
    app[ACTIVITY] = Activity()
    app[MOVING] = asyncio.Lock()
    app.cleanup_ctx.append(_sweep)
    if idle_seconds:
        app.cleanup_ctx.append(_exit_when_idle(idle_seconds))
    app.add_routes(routes)
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    token = os.environ.get("TETHER_FILES_TOKEN", "")
    if not token:
        raise SystemExit("TETHER_FILES_TOKEN is not set")
    app = create_app(
        Path(os.environ.get("TETHER_WORKSPACE", "/workspace")),
        token,
        float(os.environ.get("TETHER_FILES_IDLE_SECONDS", "300")) or None,
    )
    port = int(os.environ.get("TETHER_FILES_PORT", "8090"))
    web.run_app(app, host="0.0.0.0", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
