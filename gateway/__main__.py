"""`python -m tether.gateway`: serve the Interactions API (TETHER_PORT) and the sandboxes'
internal API (TETHER_INTERNAL_PORT) until SIGTERM or SIGINT."""

import asyncio
import logging
import signal

import uvloop
from aiohttp import web

from tether.settings import Settings

from .app import create_app, create_internal_app


async def serve(settings: Settings) -> None:
    public = create_app(settings)
    runners = [web.AppRunner(public, access_log=None)]
    await runners[0].setup()  # the connections, which the internal app shares
    runners.append(web.AppRunner(create_internal_app(public), access_log=None))
    await runners[1].setup()
    try:
        for runner, port in zip(runners, (settings.port, settings.internal_port), strict=True):
            await web.TCPSite(runner, settings.host, port, reuse_port=settings.reuse_port).start()
        logging.getLogger("tether.gateway").info(
            "serving on %s:%d (internal API on port %d)",
            settings.host,
            settings.port,
            settings.internal_port,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvloop.run(serve(Settings()))
