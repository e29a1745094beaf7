"""`manage.py serve` (the embedded default that `bin/run` starts) as a real subprocess: its
start-up output ends with the URL and the banner (bin/run's demo sign-ins), and the routine
logs of the in-process worker, scheduler and uvicorn are quiet unless asked for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.calls.realtime_server import free_port
from tests.test_web_process import ROOT, START_TIMEOUT_S, database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def serve(tmp_path, *args: str, **env: str) -> str:
    """Start serve, wait for it to answer, stop it; its whole output."""
    port = free_port()
    banner = tmp_path / "banner.txt"
    banner.write_text("  Staff portal:  /login/   password 'demo-pass-1'\n")
    process = subprocess.Popen(  # noqa: S603 - our own command
        [
            sys.executable,
            "manage.py",
            "serve",
            "--port",
            str(port),
            "--banner-file",
            str(banner),
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url(), "SERVE_LOGS": "", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/login/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        time.sleep(0.5)  # the banner is printed by its own thread once the server is up
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    return output


def test_start_up_ends_with_the_url_and_the_sign_ins_and_routine_logs_are_quiet(tmp_path):
    output = serve(tmp_path)
    start_up = output[: output.index("Press Ctrl-C to stop.")]
    assert "appointment-calls is running on http://127.0.0.1:" in start_up
    assert "password 'demo-pass-1'" in start_up
    assert "--logs or SERVE_LOGS=1" in start_up
    # Nothing routine before or after the banner (the access log of our request may follow).
    assert "INFO uvicorn.error" not in output
    assert "INFO celery" not in output
    assert "INFO config.lifespan" not in output


@pytest.mark.parametrize(("args", "env"), [(["--logs"], {}), ([], {"SERVE_LOGS": "1"})])
def test_logs_show_everything_when_asked(tmp_path, args, env):
    output = serve(tmp_path, *args, **env)
    assert "INFO uvicorn.error" in output
    assert "appointment-calls is running on" in output
    assert "Routine worker and scheduler logs are hidden" not in output
