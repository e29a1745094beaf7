"""The production processes a benchmark starts, shared by the scripts in bench/.

Not a benchmark. A bench starts the same processes as a deployment (README "Production") and
measures them from outside:

- `bootstrap(settings_module)`: Django set up in the bench process (DATABASE_URL, REDIS_URL;
  tasks really enqueued, never eager); `production_env(name)` before it: the bench process
  itself as production runs (DEBUG off), for benches that time code in their own process;
- `process_env(settings_module)`: the environment of the processes it starts (DEBUG off as
  in production, the bench process's keys and secrets, quiet logs);
- `web(...)`, `worker(...)`, `scheduler(...)`: a `Proc` for `bin/web` (uvicorn serving the
  production ASGI app, config.asgi), for `celery -A config worker`, and for
  `manage.py run_scheduler`;
- `Proc.start()` / `.kill()` (SIGKILL to its process group: a worker's children die too) /
  `.stop()` (SIGTERM, then SIGKILL); `wait_ready(procs)` (a Celery ping, a TCP port that
  accepts, or a line in the log);
- `Proc.cpu()`: user + system CPU-seconds of every process it ran (its session, reaped
  children included), added up over restarts: a process is sampled just before it is killed
  or stopped, so a kill loses nothing of the count;
- `free_port()`: a free TCP port in BENCH_PORTS (18100-18199 unless set), for the servers a
  bench runs on this shared machine.

bench/scheduler.py, relay.py, push.py, events.py and slow_reader.py start their processes here.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/appointment_calls_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 60.0


class BenchFailure(Exception):
    pass


def session_cpu(sid: int) -> float:
    """User + system CPU-seconds of every process in a session (a worker and its prefork
    children, with the children it has reaped), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid:  # field 6 of stat: the session id
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / ticks


@dataclass
class Proc:
    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    ping: str = ""  # Celery node name to ping for readiness; else the port, else `ready_line`
    ready_line: str = ""
    port: int = 0
    process: subprocess.Popen | None = None
    cpu_before: float = 0.0  # CPU-seconds of the incarnations killed or stopped

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603
                self.cmd,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a kill takes its children too
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu(self) -> float:
        """CPU-seconds of every incarnation so far (the running one read now)."""
        live = session_cpu(self.process.pid) if self.running() else 0.0
        return self.cpu_before + live

    def _sample(self) -> None:
        if self.running():
            self.cpu_before += session_cpu(self.process.pid)

    def kill(self) -> None:
        if self.running():
            self._sample()
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if not self.running():
            return
        self._sample()
        # The main process only: a Celery worker then stops its children itself (warm).
        os.kill(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # whatever is left of its group
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def bootstrap(settings_module: str) -> None:
    """Set Django up in the bench process, run from the repo root."""
    script_dir = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != script_dir]
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false"  # benches enqueue for real
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

    import django

    django.setup()


def production_env(name: str) -> None:
    """This bench process as production runs (DEBUG off: no query log), with what production
    must set made up for the run (keys and secrets named after the bench), locmem email, no
    https redirect, warnings only. Call before `bootstrap`."""
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", f"bench-{name}-not-a-secret")
    os.environ.setdefault("CALLS_API_KEY", f"bench-{name}-key")
    os.environ.setdefault("CALLS_API_SECRET", f"bench-{name}-secret-bench-{name}-secret")
    os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def process_env(settings_module: str = "config.settings", **extra: str) -> dict[str, str]:
    """The environment of a started process: this one's, DEBUG off (no query log), the same
    keys and secrets as the bench process, plain http and locmem email locally."""
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DJANGO_DEBUG": "false",
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "SECURE_SSL_REDIRECT": "false",
            "SECRET_KEY": settings.SECRET_KEY,
            "CALLS_API_KEY": settings.CALLS_API_KEY,
            "CALLS_API_SECRET": settings.CALLS_API_SECRET,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 free now, from BENCH_PORTS ("18100-18199" unless set)."""
    low, _, high = os.environ.get("BENCH_PORTS", "18100-18199").partition("-")
    ports = list(range(int(low), int(high or low) + 1))
    random.shuffle(ports)  # two benches starting together rarely pick the same one
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchFailure(f"no free port in {low}-{high}")


def web(logs: Path, env: dict[str, str], *, port: int | None = None, name: str = "web") -> Proc:
    """bin/web, the production web process (uvicorn, config.asgi, one worker), on 127.0.0.1."""
    port = port or free_port()
    env = {**env, "WEB_HOST": "127.0.0.1", "PORT": str(port), "PYTHON": sys.executable}
    return Proc(name, [str(ROOT / "bin" / "web")], env, logs / f"{name}.log", port=port)


def worker(
    name: str,
    logs: Path,
    env: dict[str, str],
    *,
    queues: str = "",
    concurrency: int | None = None,
    include: str = "",
) -> Proc:
    """`celery -A config worker`, prefork (concurrency: the CPU count unless given), as
    deployed; node name `<name>@bench` (pinged for readiness)."""
    node = f"{name}@bench"
    cmd = [sys.executable, "-m", "celery", "-A", "config", "worker", "-n", node, "--pool=prefork"]
    if queues:
        cmd += ["-Q", queues]
    if include:
        cmd += ["--include", include]
    if concurrency:
        cmd += [f"--concurrency={concurrency}"]
    cmd += ["--loglevel=WARNING", "--without-heartbeat", "--without-mingle", "--without-gossip"]
    return Proc(name, cmd, env, logs / f"{name}.log", ping=node)


def scheduler(name: str, logs: Path, env: dict[str, str]) -> Proc:
    """`manage.py run_scheduler`; ready once it logged that it started."""
    cmd = [sys.executable, "manage.py", "run_scheduler"]
    return Proc(name, cmd, env, logs / f"{name}.log", ready_line="scheduler started")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_ready(procs: list[Proc], timeout: float = START_TIMEOUT_S) -> None:
    """Wait until each process answers (Celery ping, TCP port, or its ready line); a process
    that exits meanwhile fails the bench with the end of its log."""
    from config.celery import app

    deadline = time.monotonic() + timeout
    waiting = list(procs)
    while waiting:
        for proc in list(waiting):
            assert proc.process is not None
            if proc.process.poll() is not None:
                raise BenchFailure(
                    f"{proc.name} exited with {proc.process.returncode}:\n{proc.tail()}"
                )
            if proc.ping:
                if app.control.ping(destination=[proc.ping], timeout=0.5):
                    waiting.remove(proc)
            elif proc.port:
                if _port_open(proc.port):
                    waiting.remove(proc)
            elif not proc.ready_line or proc.ready_line in proc.log.read_text(errors="replace"):
                waiting.remove(proc)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(p.name for p in waiting)
            raise BenchFailure(f"not ready after {timeout:.0f} s: {names}")
        if waiting:
            time.sleep(0.2)
