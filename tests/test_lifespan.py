"""The web process's ASGI lifespan (config.lifespan): startup tunes the garbage collector.

Each case runs the real ASGI application's lifespan in a fresh interpreter, as uvicorn does in
a worker, so the test process's own collector is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

DRIVER = """
import asyncio, gc, json
from config.asgi import application

async def main():
    inbox = asyncio.Queue()
    sent = []
    async def receive():
        return await inbox.get()
    async def send(message):
        sent.append(message["type"])
    await inbox.put({"type": "lifespan.startup"})
    await inbox.put({"type": "lifespan.shutdown"})
    before = {"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}
    await application({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    after = {"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}
    print(json.dumps({"before": before, "after": after, "sent": sent}))

asyncio.run(main())
"""


def run_lifespan(**env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WEB_GC_")}
    environ.update(env, DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", DRIVER],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_startup_freezes_the_loaded_app_and_raises_the_first_generation_threshold():
    state = run_lifespan()
    assert state["sent"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert state["before"]["frozen"] == 0
    # The loaded app is tens of thousands of objects (Django, DRF, Channels, our modules).
    assert state["after"]["frozen"] > 10_000
    assert state["after"]["threshold"][0] == 10_000
    # The older generations keep Python's thresholds.
    assert state["after"]["threshold"][1:] == state["before"]["threshold"][1:]


@pytest.mark.parametrize("threshold", ["0", "2500"])
def test_the_tuning_follows_the_environment(threshold):
    state = run_lifespan(WEB_GC_FREEZE="false", WEB_GC_GEN0_THRESHOLD=threshold)
    assert state["sent"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert state["after"]["frozen"] == 0
    expected = state["before"]["threshold"][0] if threshold == "0" else int(threshold)
    assert state["after"]["threshold"][0] == expected
