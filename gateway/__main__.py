"""`python -m tether.gateway`: serve the Interactions API."""

import logging

from aiohttp import web

from tether.settings import Settings

from .app import create_app

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings()
    web.run_app(create_app(settings), host=settings.host, port=settings.port, access_log=None)
