"""`python -m tether.dev.node`: run the dev node (dev only, no isolation)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from kubernetes_asyncio import client, config

from tether.dev.node.node import DevNode


def image_stand_in() -> tuple[list[str], str]:
    """What stands in for a sandbox image: this Python, its packages and Tether's own folders,
    but not the repository around them (which holds local credentials)."""
    import tether.gateway
    import tether.operator
    import tether.sandbox

    dirs = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    for package in (tether, tether.operator, tether.gateway, tether.sandbox):
        dirs.update(str(Path(folder).resolve()) for folder in package.__path__)
    path = os.pathsep.join([str(Path(sys.prefix) / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    return sorted(dirs), path


async def main(args: argparse.Namespace) -> None:
    configuration = client.Configuration()
    await config.load_kube_config(client_configuration=configuration)
    host_dirs, path = image_stand_in()
    async with client.ApiClient(configuration) as api:
        api.user_agent = "tether-devnode"
        node = DevNode(api, args.name, args.workdir, host_dirs, path, args.logs_port)
        await node.run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="tether-dev-node")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--logs-port", type=int, required=True)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main(arguments))
