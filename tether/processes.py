"""Child processes for the local stack: logged to files, and never outliving their parent."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """A process did not come up; the message carries its last log lines."""


def _die_with_parent() -> None:
    # If the test run or `make up`'s supervisor is killed outright, take the children with it.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: list[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            preexec_fn=_die_with_parent,
        )


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(log: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def wait_until(
    what: str,
    ready: Callable[[], bool],
    timeout: float,
    watch: list[tuple[str, subprocess.Popen, Path]] = (),
) -> None:
    """Poll `ready` until it holds; fail early, with logs, if a watched process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc, log in watch:
            if proc.poll() is not None:
                raise StartupError(f"{name} exited with {proc.returncode}:\n{tail(log)}")
        if ready():
            return
        time.sleep(0.05)
    last = watch[-1] if watch else None
    raise StartupError(
        f"{what} not ready after {timeout}s" + (f":\n{tail(last[2])}" if last else "")
    )


def http_ok(url: str, context=None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except OSError:
        return False
