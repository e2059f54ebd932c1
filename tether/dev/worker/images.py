"""Images the node runs without a registry: built with buildah, imported into containerd."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from tether.crds import ROOT
from tether.dev.processes import StartupError
from tether.dev.versions import CACHE

from .parts import NodeParts

PAUSE_SOURCE = Path(__file__).with_name("pause.c")
BUILDAH_STORE = CACHE / "buildah"


def buildah(parts: NodeParts, *args: str) -> str:
    """buildah on its own store under the cache. overlay: vfs would copy the whole tree for
    every layer (13 GB for the three images); buildah unmounts what it mounted when done."""
    argv = [
        str(parts.buildah),
        "--root",
        str(BUILDAH_STORE / "root"),
        "--runroot",
        str(BUILDAH_STORE / "run"),
        "--storage-driver",
        "overlay",
        *args,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StartupError(f"buildah {args[0]} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


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
    return archive(parts, name)


def archive(parts: NodeParts, name: str) -> Path:
    """An image of buildah's store as a docker archive, in a folder of its own."""
    path = Path(tempfile.mkdtemp(prefix="tether-image-")) / "image.tar"
    buildah(parts, "push", name, f"docker-archive:{path}:{name}")
    return path


def files_digest(files: Mapping[str, Path], entrypoint: list[str]) -> str:
    """What a scratch image holds, as one digest: its files' paths and bytes, its entrypoint."""
    digest = hashlib.sha256(json.dumps(entrypoint).encode())
    for target, source in sorted(files.items()):
        digest.update(target.encode() + b"\0" + hashlib.sha256(source.read_bytes()).digest())
    return f"sha256:{digest.hexdigest()}"


# -- the project's own images, from its Dockerfile ---------------------------------------------

BASE_IMAGE = "docker.io/library/python:3.11-slim"
BASE_ROOTFS = CACHE / "base" / "bookworm-python3.11"
TARGETS = ("operator", "gateway", "sandbox", "egress")


def image_name(target: str, tag: str = "dev") -> str:
    return f"tether.local/tether-{target}:{tag}"


def stand_in_base(parts: NodeParts) -> None:
    """python:3.11-slim, when it cannot be pulled: Debian bookworm from debootstrap, with Python
    3.11 at /usr/local (a venv there: the official image's layout, where `pip install --prefix`
    and COPY --from land where Python looks) and this machine's CA certificates, since its
    outbound TLS is re-signed by a proxy."""
    if buildah(parts, "images", "--quiet", "--filter", f"reference={BASE_IMAGE}"):
        return
    if not BASE_ROOTFS.exists():
        rootfs = BASE_ROOTFS.with_suffix(".tmp")
        shutil.rmtree(rootfs, ignore_errors=True)
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(rootfs),
                "http://deb.debian.org/debian",
            ],
            check=True,
            capture_output=True,
        )
        for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            (rootfs / "usr/local/share/ca-certificates" / cert.name).write_bytes(cert.read_bytes())
        subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], check=True)
        subprocess.run(["chroot", str(rootfs), "python3", "-m", "venv", "/usr/local"], check=True)
        rootfs.rename(BASE_ROOTFS)
    container = buildah(parts, "from", "scratch")
    try:
        buildah(parts, "copy", container, f"{BASE_ROOTFS}/", "/")
        for env in (
            "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
            "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",  # pip's own bundle lacks the proxy's CA
        ):
            buildah(parts, "config", "--env", env, container)
        buildah(parts, "config", "--cmd", '["python3"]', container)
        buildah(parts, "commit", "--quiet", container, BASE_IMAGE)
    finally:
        buildah(parts, "rm", container)


def build(parts: NodeParts, name: str, file: Path, target: str | None = None) -> str:
    """An image from a Dockerfile, as users build it with Docker; returns the image id."""
    buildah(
        parts,
        "build",
        "--pull=never",
        "--layers",
        "--network=host",  # no CNI network of buildah's own on the host
        "--isolation=chroot",
        "--runtime=runc",  # crun cannot run on these VMs' hybrid cgroups
        *(["--target", target] if target else []),
        "--tag",
        name,
        "--file",
        str(file),
        str(ROOT),
    )
    return buildah(parts, "images", "--quiet", "--no-trunc", name)


REDIS_IMAGE = "tether.local/redis:7"
"""What stands in for the chart's `redis:7.4-alpine` here: Debian's Redis 7."""


def build_all(
    parts: NodeParts, targets: Iterable[str] = TARGETS, redis: bool = False
) -> dict[str, str]:
    """The Dockerfile's `targets`, and with `redis` the local stack's Redis, on the stand-in base
    if need be: image name -> id."""
    stand_in_base(parts)
    built = {
        image_name(target): build(parts, image_name(target), ROOT / "Dockerfile", target)
        for target in targets
    }
    if redis:
        built[REDIS_IMAGE] = build(parts, REDIS_IMAGE, Path(__file__).with_name("redis.Dockerfile"))
    return built


def main() -> None:
    for name, image_id in build_all(NodeParts.from_cache()).items():
        print(name, image_id)


if __name__ == "__main__":
    main()
