"""Child processes for the local stack: logged to files, never outliving their parent, and
restarted exactly as before (same command, ports and files) when a supervisor watches them."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import logging
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

_PR_SET_PDEATHSIG = 1
log = logging.getLogger("tether.supervisor")


class StartupError(RuntimeError):
    """A process did not come up; the message carries its last log lines."""


def _die_with_parent() -> None:
    # If the test run or `make up`'s supervisor is killed outright, take the children with it.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# The parent-death signal fires when the *thread* that forked the child ends, not its process.
# Every child is forked by this one thread, which lives as long as the process: a child started
# from a passing thread (a supervisor's, a test's) would otherwise die with that thread.
_FORKER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tether-spawn")


def spawn(
    argv: list[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return _FORKER.submit(
            subprocess.Popen,
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            preexec_fn=_die_with_parent,
        ).result()


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


# A service that dies this many times in a row, each time sooner than STABLE_SECONDS after its
# start, is broken rather than unlucky: start-up gives up on it (the supervisor never does).
GIVE_UP_AFTER = 5
STABLE_SECONDS = 30.0


class Component:
    """Something started whole or not at all: a start that fails stops what it had started.
    Subclasses give `_start` and `stop` (which must be safe on a half-started component)."""

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(eq=False)
class Service:
    """One component of the stack: how to start it, and how to tell that it answers."""

    name: str
    argv: list[str]
    log: Path
    ready: Callable[[], bool]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    supervised: bool = False
    started_at: float = 0.0
    quick_crashes: int = 0

    def start(self) -> None:
        self.proc = spawn(self.argv, self.log, self.env, self.cwd)
        self.started_at = time.monotonic()

    def stop(self) -> None:
        """Stop it for good: a supervisor does not bring back a service stopped on purpose."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop(proc)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        return self.running and self.ready()

    def failure(self) -> str | None:
        """Why it will not come up by itself; None while it runs or a supervisor restarts it."""
        proc = self.proc
        if proc is None:
            return f"{self.name} was stopped"
        if proc.poll() is None:
            return None
        if not self.supervised:
            return f"{self.name} exited with {proc.returncode}:\n{tail(self.log)}"
        if self.quick_crashes >= GIVE_UP_AFTER:
            return f"{self.name} exited {self.quick_crashes} times in a row:\n{tail(self.log)}"
        return None

    def wait_ready(self, timeout: float) -> None:
        wait_until(self.name, self.healthy, timeout, [self])


class Supervisor:
    """Restarts every watched service whenever its process ends, at any moment (start-up
    included), until stopped. The first restart is immediate; a crash loop backs off: 0.5 s,
    doubling up to 10 s, until the service has stayed up STABLE_SECONDS."""

    def __init__(self, first_delay: float = 0.5, max_delay: float = 10.0) -> None:
        self.first_delay, self.max_delay = first_delay, max_delay
        self.services: dict[str, Service] = {}
        self.restarts: dict[str, int] = {}
        self._due: dict[str, tuple[float, subprocess.Popen]] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tether-supervisor", daemon=True)

    def watch(self, service: Service) -> None:
        service.supervised = True
        self.restarts.setdefault(service.name, 0)
        self.services[service.name] = service

    def forget(self, service: Service) -> None:
        """Bring it back no more."""
        self.services.pop(service.name, None)
        service.supervised = False

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        for service in self.services.values():
            service.supervised = False  # nothing brings it back any more

    def _run(self) -> None:
        while not self._stopping.wait(0.1):
            for service in list(self.services.values()):
                try:
                    self._check(service)
                except Exception:  # a failed spawn is retried at the next turn, never fatal
                    log.exception("restarting %s failed", service.name)

    def _check(self, service: Service) -> None:
        proc = service.proc
        if proc is None or proc.poll() is None:
            return  # stopped on purpose, or running
        now = time.monotonic()
        due = self._due.get(service.name)
        if due is None or due[1] is not proc:
            quick = now - service.started_at < STABLE_SECONDS
            service.quick_crashes = service.quick_crashes + 1 if quick else 1
            again = service.quick_crashes - 1
            delay = min(self.first_delay * 2 ** (again - 1), self.max_delay) if again else 0.0
            self._due[service.name] = (now + delay, proc)
            when = f"in {delay:g} s" if delay else "now"
            log.warning("%s exited with %s; restarting %s", service.name, proc.returncode, when)
        elif now >= due[0]:
            del self._due[service.name]
            service.start()
            self.restarts[service.name] += 1
            log.warning("%s restarted (pid %d)", service.name, service.proc.pid)


def wait_until(
    what: str,
    ready: Callable[[], bool],
    timeout: float,
    watch: Iterable[Service | tuple[str, subprocess.Popen, Path]] = (),
) -> None:
    """Poll `ready` until it holds; fail early, with logs, if a watched process exits for good
    (a supervised service that exits is waited for again)."""
    watch = list(watch)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for watched in watch:
            if error := _failure(watched):
                raise StartupError(error)
        if ready():
            return
        time.sleep(0.05)
    last = watch[-1] if watch else None
    log_path = last.log if isinstance(last, Service) else last[2] if last else None
    raise StartupError(
        f"{what} not ready after {timeout}s" + (f":\n{tail(log_path)}" if log_path else "")
    )


def _failure(watched: Service | tuple[str, subprocess.Popen, Path]) -> str | None:
    if isinstance(watched, Service):
        return watched.failure()
    name, proc, log_path = watched
    if proc.poll() is not None:
        return f"{name} exited with {proc.returncode}:\n{tail(log_path)}"
    return None


def http_ok(url: str, context=None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except OSError:
        return False
