"""A git server over HTTPS on this machine's loopback, for repository sources: git's own smart
HTTP protocol (`git http-backend`, as GitHub speaks it, shallow clones included), behind a
certificate from a CA of its own that a client is told to trust."""

from __future__ import annotations

import functools
import http.server
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tether.dev import pki

AUTHOR = ["-c", "user.name=Tether Tests", "-c", "user.email=tests@tether.invalid"]


@dataclass
class GitServer:
    """`repositories`: name → {path: content}, each committed as one commit. The certificate
    names `host`: the name clients reach it by."""

    repositories: dict[str, dict[str, str]]
    host: str = "localhost"
    port: int = 0
    requests: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"https://{self.host}:{self.port}/{name}.git"

    @property
    def ca_pem(self) -> str:
        return self._ca.cert.decode()

    def __enter__(self) -> GitServer:
        self._dir = tempfile.TemporaryDirectory(prefix="tether-git-")
        root = Path(self._dir.name)
        for name, files in self.repositories.items():
            _bare_repository(root, name, files)
        self._ca = pki.authority("tether-test-git-ca")
        context = pki.server_context(self._ca, self.host)
        handler = functools.partial(_Handler, self.requests, root / "repos")
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        self._dir.cleanup()


def _bare_repository(root: Path, name: str, files: dict[str, str]) -> None:
    work = root / "work" / name
    work.mkdir(parents=True)
    for path, content in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(content)
    git = functools.partial(subprocess.run, check=True, capture_output=True)
    git(["git", "init", "--quiet", "--initial-branch", "main", str(work)])
    git(["git", "-C", str(work), "add", "--all"])
    git(["git", "-C", str(work), *AUTHOR, "commit", "--quiet", "--message", "the sources"])
    bare = root / "repos" / f"{name}.git"
    git(["git", "clone", "--quiet", "--bare", str(work), str(bare)])


class _Handler(http.server.BaseHTTPRequestHandler):
    """Each request handed to `git http-backend` as CGI, its answer relayed."""

    def __init__(self, requests: list[str], repos: Path, *args, **kwargs) -> None:
        self._requests, self._repos = requests, repos
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self._backend()

    def do_POST(self) -> None:
        self._backend()

    def _backend(self) -> None:
        self._requests.append(f"{self.command} {self.path}")
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            "GIT_PROJECT_ROOT": str(self._repos),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "PATH": "/usr/bin:/bin",
        }
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        headers = [line.split(":", 1) for line in head.decode("latin-1").split("\r\n") if line]
        status = next((v.strip() for k, v in headers if k.lower() == "status"), "200 OK")
        self.send_response(int(status.split()[0]))
        for key, value in headers:
            if key.lower() != "status":
                self.send_header(key, value.strip())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass
