"""Browser tests: Playwright (sync API) drives Debian's Chromium against the real ASGI app
(uvicorn: HTTP and the events WebSocket, as in production). Every page records console
errors and uncaught exceptions; tests assert none."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        # bin/test installs it; a missing browser is a failure, never a skip.
        pytest.fail(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread while the browser is open;
    # Django would otherwise refuse the test body's ORM calls (setting up, checking). Allowed
    # for this module only, and the loop is gone when the module's tests are done.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Console:
    """What went wrong in the browser: console errors and uncaught page errors."""

    errors: list[str] = field(default_factory=list)

    def on_console(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url')})")

    def on_page_error(self, error) -> None:
        self.errors.append(f"pageerror: {error}")


@pytest.fixture
def console():
    return Console()


@pytest.fixture
def new_page(browser, console):
    """Open a page in a fresh browser context (its own cookies), watched for errors."""
    contexts = []

    def open_page(width: int = 1280, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("console", console.on_console)
        page.on("pageerror", console.on_page_error)
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@dataclass
class AppServer:
    url: str


@pytest.fixture
def app_server(transactional_db):
    """uvicorn serving the whole app (pages and WebSockets) on a free port."""
    from channels.layers import channel_layers

    from tests.calls.realtime_server import running_server

    # A fresh channel layer bound to this server's loop (an earlier test's layer holds locks
    # of another loop), as tests/calls/conftest.py's `base` does.
    channel_layers.backends.clear()
    with running_server() as address:
        yield AppServer(url=f"http://{address}")
    channel_layers.backends.clear()


# Chromium's fake cameras (moving test patterns) and microphone (a beep), granted without a
# prompt: what a person who allows their devices looks like to the page. Of the three cameras,
# fake_device_0 (the default) and fake_device_2 send ordinary video; fake_device_1 is a depth
# camera (Y16) that WebRTC cannot encode.
FAKE_MEDIA_ARGS = [
    "--use-fake-device-for-media-stream=device-count=3",
    "--use-fake-ui-for-media-stream",
]


@pytest.fixture
def launch_chromium(browser, console):
    """Start another Chromium process (a separate person on a separate machine, not just
    another context) and open a page in it, watched for errors like `new_page`'s.
    `fake_devices` / `fake_ui` control the fake camera and microphone and their automatic
    permission; `permissions` are granted to the context (none: the browser decides);
    `locale` is the browser's language (none: Chromium's default)."""
    launched = []
    playwright = browser.browser_type

    def open_page(
        *,
        fake_devices: bool = True,
        fake_ui: bool = True,
        permissions: list[str] | None = None,
        width: int = 1280,
        height: int = 900,
        locale: str | None = None,
    ):
        args = list(CHROMIUM_ARGS)
        if fake_devices:
            args.append(FAKE_MEDIA_ARGS[0])
        if fake_ui:
            args.append(FAKE_MEDIA_ARGS[1])
        instance = playwright.launch(executable_path=CHROMIUM, args=args)
        launched.append(instance)
        context = instance.new_context(
            viewport={"width": width, "height": height},
            permissions=permissions or [],
            locale=locale,  # the browser's language (Accept-Language, navigator.language)
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.on("console", console.on_console)
        page.on("pageerror", console.on_page_error)
        return page

    yield open_page
    for instance in launched:
        instance.close()
