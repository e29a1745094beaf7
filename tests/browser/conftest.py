"""Browser tests: Playwright (sync API) drives Debian's Chromium against the real ASGI app
(uvicorn: HTTP and the events WebSocket, as in production). Every page records console
errors and uncaught exceptions; tests assert none."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.utils import timezone

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


def a_morning_zone(now: dt.datetime) -> str:
    """A time zone where it is now about ten in the morning (POSIX signs: Etc/GMT-3 is UTC+3)."""
    hours = (10 - now.astimezone(dt.UTC).hour) % 24
    if hours > 14:  # UTC-12 .. UTC+14 exist
        hours -= 24
    return f"Etc/GMT{-hours:+d}" if hours else "Etc/GMT"


@pytest.fixture
def clinic_in_its_morning(clinic):
    """The clinic, working in a zone where it is morning now.

    Browser tests drive the real server on the real clock, and the today page shows the clinic's
    one day: in a clinic whose evening it is, appointments booked for the next hour fall on its
    tomorrow and the page shows an empty day. Tests that read the day's rows use this fixture.
    """
    clinic.time_zone = a_morning_zone(timezone.now())
    clinic.save(update_fields=["time_zone"])
    return clinic
