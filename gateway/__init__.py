"""The aiohttp gateway: the one HTTP endpoint of the Interactions API (tether.gateway)."""
