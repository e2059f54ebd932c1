"""The browser tools, in the workspace container: one headless Chromium per run, driven by
Playwright, started at the run's first browser_* call and closed with the workspace server.

It reaches the web only through the egress proxy (HTTP_PROXY), like every other connection of
the sandbox, so the run's allowlist holds for every page, script and image it loads. Each call
is bounded in time; the browser's memory is the workspace container's (its cgroup limit), with
the JavaScript heap capped below it.

A page is answered as the model reads it: its visible text (clipped) and a numbered list of what
can be acted on, links and form fields and buttons. browser_click and browser_type take one of
those numbers (`ref`) or a CSS selector.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Browser, Locator, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from tether.api.internal import EGRESS_BLOCKED_HEADER

CHROMIUM = os.environ.get("TETHER_CHROMIUM", "/usr/bin/chromium")
TEXT_LIMIT = 16 * 1024
TARGET_LIMIT = 200
NAVIGATE_MS = 30_000
ACTION_MS = 10_000
SETTLE_MS = 3_000
HEAP_MB = 512
VIEWPORT = {"width": 1280, "height": 800}
REF = "data-tether-ref"
NOWHERE = "http://127.0.0.1:9"
QUIET = (
    "--disable-background-networking",
    "--disable-component-update",
    f"--component-updater=url-source={NOWHERE}",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-pings",
    "--no-first-run",
    "--dns-prefetch-disable",
    *(
        f"--{name}={NOWHERE}"
        for name in (
            "gaia-url",
            "lso-url",
            "google-apis-url",
            "google-base-url",
            "sync-url",
            "gcm-checkin-url",
            "gcm-mcs-endpoint",
            "gcm-registration-url",
        )
    ),
    f"--variations-server-url={NOWHERE}",
    "--disable-features=OptimizationHints,Translate,MediaRouter,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater,NetworkTimeServiceQuerying,PreconnectToSearch",
)
"""Chromium calls home on its own (updates, sign-in, autofill): it does not, so the run's
egress is only what its pages load."""

MARK_TARGETS = """([attribute, limit]) => {
  const selector = 'a[href], button, input:not([type=hidden]), select, textarea, summary, ' +
    '[role=button], [role=link], [role=checkbox], [role=tab], [onclick], [contenteditable=true]';
  document.querySelectorAll(`[${attribute}]`).forEach(e => e.removeAttribute(attribute));
  const found = [];
  for (const element of document.querySelectorAll(selector)) {
    const box = element.getBoundingClientRect();
    const style = getComputedStyle(element);
    if ((box.width === 0 && box.height === 0) || style.visibility === 'hidden') continue;
    if (found.length >= limit) break;
    element.setAttribute(attribute, String(found.length + 1));
    const label = element.labels && element.labels.length ? element.labels[0].innerText : '';
    found.push({
      tag: element.tagName.toLowerCase(),
      role: element.getAttribute('role') || '',
      type: element.getAttribute('type') || '',
      name: element.getAttribute('name') || '',
      text: (element.innerText || label || element.getAttribute('aria-label') ||
             element.getAttribute('placeholder') || element.getAttribute('title') ||
             element.getAttribute('alt') || '').trim().replace(/\\s+/g, ' ').slice(0, 80),
      value: 'value' in element && element.type !== 'password' ? String(element.value) : '',
      href: element.getAttribute('href') || '',
    });
  }
  return found;
}"""


class BrowserError(Exception):
    """A browser call the model can learn from: a refused or failed page, a missing target."""


def describe_target(ref: int, target: dict[str, str]) -> str:
    """One line of the numbered list: `[3] link "Pricing" -> /pricing`,
    `[4] input type=email name=email "Your email"`."""
    tag = target["tag"]
    kind = target.get("role") or ("link" if tag == "a" else tag)
    parts = [f"[{ref}] {kind}"]
    if tag == "input" or (tag == "button" and target.get("type")):
        parts.append(f"type={target.get('type') or 'text'}")
    if target.get("name"):
        parts.append(f"name={target['name']}")
    if target.get("text"):
        parts.append(f'"{target["text"]}"')
    if target.get("value"):
        parts.append(f"value={target['value'][:80]!r}")
    if target.get("href"):
        parts.append(f"-> {target['href']}")
    return " ".join(parts)


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    cut = len(text) - limit
    return text if cut <= 0 else text[:limit] + f"\n… [{cut} characters cut]"


def target_selector(ref: Any = None, selector: Any = None) -> str:
    """What browser_click and browser_type act on: a number from the page's list, or a CSS
    selector."""
    if ref not in (None, ""):
        number = str(ref).strip().strip("[]")
        if not number.isdigit():
            raise BrowserError(f"ref must be a number from the page's list, not {ref!r}")
        return f"[{REF}='{number}']"
    if isinstance(selector, str) and selector.strip():
        return selector
    raise BrowserError("name what to act on: ref (a number from the page's list) or selector")


class Tab:
    """The run's one browser and its one page, started at the first call."""

    def __init__(self, proxy: str | None = None, scratch: Path = Path("/tmp/tether-browser")):
        self.proxy = proxy if proxy is not None else os.environ.get("HTTP_PROXY", "")
        self.scratch = scratch
        self._lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._page: Page | None = None

    async def page(self) -> Page:
        try:
            return await self._open()
        except PlaywrightError as error:
            await self.close()
            raise BrowserError(f"the browser did not start: {error}") from None

    async def _open(self) -> Page:
        if self._page is None or self._page.is_closed():
            self.scratch.mkdir(parents=True, exist_ok=True)
            self._playwright = self._playwright or await async_playwright().start()
            self._browser = await self._playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    *QUIET,
                    "--disable-dev-shm-usage",  # /dev/shm is 64 MiB in a pod: /tmp instead
                    f"--js-flags=--max-old-space-size={HEAP_MB}",
                ],
                # Its profile, caches and crash reports go to scratch, never into /workspace.
                env={**os.environ, "HOME": str(self.scratch), "XDG_CACHE_HOME": str(self.scratch)},
                # Loopback stays direct: the pod's own (and NOWHERE, where the calls home go).
                proxy={"server": self.proxy} if self.proxy else None,
                timeout=NAVIGATE_MS,
            )
            context = await self._browser.new_context(viewport=VIEWPORT, accept_downloads=False)
            self._page = await context.new_page()
            self._page.set_default_timeout(ACTION_MS)
            self._page.set_default_navigation_timeout(NAVIGATE_MS)
        return self._page

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
        if self._playwright is not None:
            await self._playwright.stop()
        self._browser = self._playwright = self._page = None

    async def navigate(self, url: str, save_text: Path | None = None) -> dict[str, Any]:
        """Open `url`; with `save_text`, its whole visible text is written there too."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise BrowserError(f"only http and https pages can be opened, not {url!r}")
        async with self._lock:
            page = await self.page()
            try:
                response = await page.goto(url, wait_until="load")
            except PlaywrightError as error:
                raise BrowserError(f"{url!r}: {_first_line(error)}") from None
            blocked = response is not None and response.headers.get(EGRESS_BLOCKED_HEADER.lower())
            if blocked and response.status == 403:
                raise BrowserError(f"{url!r}: 403 refused by this run's network policy")
            status = response.status if response is not None else None
            return {"status": status, **await self._settled(page, save_text)}

    async def click(self, ref: Any = None, selector: Any = None) -> dict[str, Any]:
        where = target_selector(ref, selector)
        async with self._lock:
            page = await self.page()
            try:
                await (await self._target(page, where, ref)).click()
            except PlaywrightError as error:
                raise BrowserError(f"clicking {where}: {_first_line(error)}") from None
            return await self._settled(page)

    async def type(
        self, text: str, ref: Any = None, selector: Any = None, submit: bool = False
    ) -> dict[str, Any]:
        where = target_selector(ref, selector)
        async with self._lock:
            page = await self.page()
            try:
                field = await self._target(page, where, ref)
                await field.fill(str(text))
                if submit:
                    await field.press("Enter")
            except PlaywrightError as error:
                raise BrowserError(f"typing into {where}: {_first_line(error)}") from None
            return await self._settled(page)

    async def screenshot(self, target: Path, full_page: bool = False) -> dict[str, Any]:
        async with self._lock:
            page = await self.page()
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                data = await page.screenshot(path=target, full_page=full_page, type="png")
            except PlaywrightError as error:
                raise BrowserError(f"screenshot: {_first_line(error)}") from None
            return {"url": page.url, "bytes": len(data)}

    @staticmethod
    async def _target(page: Page, where: str, ref: Any) -> Locator:
        """A ref names what the page's list showed, so it is there now or never; a selector is
        waited for (up to ACTION_MS), as a page's scripts may be adding it."""
        found = page.locator(where).first
        if ref not in (None, "") and not await found.count():
            raise BrowserError(f"ref {ref} is not on the page: open it again for a fresh list")
        return found

    async def _settled(self, page: Page, save_text: Path | None = None) -> dict[str, Any]:
        """The page once it settled (loaded, and the network quiet for a moment, or
        SETTLE_MS): its address, title, visible text and the numbered list of targets."""
        try:
            await page.wait_for_load_state("load", timeout=NAVIGATE_MS)
            await page.wait_for_load_state("networkidle", timeout=SETTLE_MS)
        except PlaywrightError:
            pass  # a page that keeps polling is read as it stands
        try:
            targets, text, title = await _read(page)
        except PlaywrightError as error:  # navigated away while being read: read again
            if "navigat" not in str(error) and "destroyed" not in str(error):
                raise BrowserError(f"reading the page: {_first_line(error)}") from None
            await page.wait_for_load_state("load", timeout=NAVIGATE_MS)
            targets, text, title = await _read(page)
        if save_text is not None:
            save_text.parent.mkdir(parents=True, exist_ok=True)
            save_text.write_text(text.strip() + "\n")
        return {
            "url": page.url,
            "title": title,
            "text": clip(text.strip()),
            "targets": [describe_target(i, t) for i, t in enumerate(targets, start=1)],
        }


async def _read(page: Page) -> tuple[list[dict[str, str]], str, str]:
    """The page's targets (numbered on the page as it is now), visible text and title."""
    targets = await page.evaluate(MARK_TARGETS, [REF, TARGET_LIMIT])
    return targets, await page.inner_text("body"), await page.title()


def _first_line(error: Exception) -> str:
    """Playwright's messages carry a call log after the first line; the model needs the first."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
