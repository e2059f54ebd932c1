"""Images the node runs without a registry: built with buildah, imported into containerd."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from tether.dev.control_plane import CACHE

from .configs import PAUSE_IMAGE
from .parts import NodeParts

PAUSE_SOURCE = Path(__file__).with_name("pause.c")
BUILDAH_STORE = CACHE / "buildah"


def buildah(parts: NodeParts, *args: str) -> str:
    """buildah on its own store under the cache (vfs: no mounts left on the host)."""
    argv = [
        str(parts.buildah),
        "--root",
        str(BUILDAH_STORE / "root"),
        "--runroot",
        str(BUILDAH_STORE / "run"),
        "--storage-driver",
        "vfs",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def pause_binary() -> Path:
    """The pause program, compiled static once per version of its source."""
    digest = hashlib.sha256(PAUSE_SOURCE.read_bytes()).hexdigest()[:12]
    binary = CACHE / "pause" / digest / "pause"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-static", "-Os", "-o", str(binary), str(PAUSE_SOURCE)], check=True)
    return binary


def scratch_image(
    parts: NodeParts, name: str, files: Mapping[str, Path], entrypoint: list[str]
) -> Path:
    """An image FROM scratch holding `files` (path in image -> host file), as a docker archive."""
    container = buildah(parts, "from", "scratch")
    try:
        for target, source in files.items():
            buildah(parts, "copy", "--chmod", "0755", container, str(source), target)
        buildah(parts, "config", "--entrypoint", json.dumps(entrypoint), container)
        buildah(parts, "commit", "--quiet", container, name)
    finally:
        buildah(parts, "rm", container)
    archive = Path(tempfile.mkdtemp(prefix="tether-image-")) / "image.tar"
    buildah(parts, "push", name, f"docker-archive:{archive}:{name}")
    return archive


def import_image(parts: NodeParts, socket: Path, archive: Path) -> None:
    """Into containerd's Kubernetes namespace, unpacked, where the kubelet finds it."""
    argv = [str(parts.ctr), "--address", str(socket), "-n", "k8s.io", "images", "import"]
    subprocess.run([*argv, str(archive)], capture_output=True, check=True)


def pause_image(parts: NodeParts) -> Path:
    return scratch_image(parts, PAUSE_IMAGE, {"/pause": pause_binary()}, ["/pause"])
