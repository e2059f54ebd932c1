"""The local control plane leaves no process behind, however its owner ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

OWNER = textwrap.dedent(
    """
    import json, signal, sys, time
    from pathlib import Path
    from tether.dev.control_plane import ControlPlane
    # Ctrl-C as a terminal delivers it, even when this test runs where SIGINT is ignored (a
    # background job of a script, as CI may start it): Python then inherits the ignoring
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with ControlPlane(workdir=Path(sys.argv[1])) as cp:  # a killed owner cannot remove it
        print(json.dumps([p.pid for p in cp.procs.values()]), flush=True)
        time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but the process table.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["interrupted", "killed"])
def test_no_process_is_left_when_the_owner_ends(how, tmp_path):
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path / "control-plane")],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        pids = json.loads(owner.stdout.readline())
        assert len(pids) == 3
        assert all(_alive(pid) for pid in pids)
        owner.send_signal(how)
        owner.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in pids if _alive(pid)] == []
    finally:
        if owner.poll() is None:
            owner.kill()
