"""Starting a whole local deployment as real processes: Redis (if needed), simulator, webhook, workers, beat.

Used by ``kie-queue demo`` and by the end-to-end tests, so both run exactly what a deployment runs
(the Procfile's commands).  Each process logs to a file under ``workdir``; :meth:`Stack.stop` ends
them all (also on errors: use the stack as a context manager).  The simulator is started as
``python -m kiesim``: the product never imports it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis as redis_lib


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05, proc=None, log_path=None):
    """Call ``predicate`` until it returns a truthy value; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}" + _tail(log_path))
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s" + _tail(log_path))
        time.sleep(interval)


def _tail(path, lines: int = 15) -> str:
    if not path or not Path(path).exists():
        return ""
    text = Path(path).read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(path) + " ---\n" + "\n".join(text)


def redis_answers(url: str) -> bool:
    try:
        return bool(redis_lib.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except (redis_lib.RedisError, OSError, ValueError):
        return False


class Stack:
    """A set of child processes sharing one environment."""

    def __init__(self, workdir: str | Path, env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ if env is None else env)
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- generic ---------------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str], env: dict | None = None,
              wrap: list[str] | None = None) -> tuple[subprocess.Popen, Path]:
        """Start ``argv`` as ``name`` (log ``<name>.log``); ``wrap`` is a command prefix such as
        ``["ip", "netns", "exec", NS]`` (it must exec the command, so signals reach it)."""
        log_path = self.workdir / f"{name}.log"
        log = open(log_path, "ab")
        proc = subprocess.Popen([*(wrap or []), *argv], stdout=log, stderr=subprocess.STDOUT, env={**self.env, **(env or {})},
                                cwd=str(self.workdir), start_new_session=True)
        log.close()
        self.procs.append((name, proc, log_path))
        return proc, log_path

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the named process's whole process group (a worker and its pool)."""
        for n, proc, _ in self.procs:
            if n == name and proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=30)

    def running(self, name: str) -> subprocess.Popen | None:
        """The live process started as ``name``, if any."""
        for n, proc, _ in reversed(self.procs):
            if n == name and proc.poll() is None:
                return proc
        return None

    def stop(self) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for _, proc, _ in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        self.procs.clear()

    # -- the parts -------------------------------------------------------------------------
    def ensure_redis(self, url: str) -> str:
        """``url`` if a Redis answers there; else a private ``redis-server`` on a free port."""
        if redis_answers(url):
            return url
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError(f"no Redis answers at {url} and redis-server is not installed: "
                               "install Redis (e.g. 'apt-get install redis-server') or set REDIS_URL")
        return self.start_redis(args=("--save", "", "--appendonly", "no"))

    def start_redis(self, name: str = "redis", port: int | None = None, args: tuple[str, ...] = (),
                    host: str = "127.0.0.1") -> str:
        """A private ``redis-server`` (run in the work directory, so AOF files land there); its URL."""
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed: install Redis (e.g. 'apt-get install redis-server')")
        port = port or free_port()
        proc, log = self.spawn(name, [binary, "--port", str(port), "--bind", host, *args])
        url = f"redis://{host}:{port}/0"
        wait_for(lambda: redis_answers(url), 15, "redis-server", proc=proc, log_path=log)
        return url

    def start_sim(self, *args: str, port: int | None = None, host: str = "127.0.0.1") -> str:
        port = port or free_port()
        proc, log = self.spawn("kiesim", [sys.executable, "-m", "kiesim", "--host", host, "--port", str(port),
                                          *args])
        url = f"http://{host}:{port}"
        wait_for(lambda: _http_ok(url + "/_sim/stats"), 20, "kiesim", proc=proc, log_path=log)
        return url

    def start_webhook(self, port: int | None = None, workers: int = 2, host: str = "127.0.0.1") -> str:
        """The Procfile's ``web`` process: gunicorn serving ``webhook:create_app()``."""
        port = port or free_port()
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        proc, log = self.spawn("web", [gunicorn, "--bind", f"{host}:{port}", "--workers", str(workers),
                                       "--threads", "4", "--timeout", "30", "webhook:create_app()"])
        url = f"http://{host}:{port}"
        wait_for(lambda: _http_ok(url + "/healthz"), 30, "webhook", proc=proc, log_path=log)
        return url

    def start_dashboard(self, port: int | None = None) -> str:
        """The Procfile's ``dashboard`` process: gunicorn serving ``dashboard:create_app()`` on loopback."""
        port = port or free_port()
        proc, log = self.spawn("dashboard", dashboard_command(port, "127.0.0.1"))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _http_ok(url + "/login"), 30, "dashboard", proc=proc, log_path=log)
        return url

    def start_worker(self, name: str = "w1", concurrency: int = 2, env: dict | None = None,
                     wait: bool = True, pool: str | None = None,
                     wrap: list[str] | None = None) -> subprocess.Popen:
        """The Procfile's ``worker`` process (``pool="solo"``: tasks run in the worker process itself, so a
        failpoint's exit ends the whole worker, as a crash of its host would; ``wrap``: see :meth:`spawn`)."""
        celery = str(Path(sys.executable).with_name("celery"))
        hostname = f"{name}@{socket.gethostname()}-{os.getpid()}"
        extra = ["--pool", pool] if pool else []
        proc, log = self.spawn(name, [celery, "-A", "worker", "worker", "--loglevel", "INFO", "--concurrency",
                                      str(concurrency), "--hostname", hostname, "--without-gossip",
                                      "--without-mingle", *extra], env=env, wrap=wrap)
        if wait:
            wait_for(lambda: "ready." in log.read_text(errors="replace"), 60, f"worker {name}", interval=0.1,
                     proc=proc, log_path=log)
        return proc

    def start_beat(self) -> subprocess.Popen:
        """The Procfile's ``beat`` process (schedule file kept in the work directory)."""
        celery = str(Path(sys.executable).with_name("celery"))
        proc, log = self.spawn("beat", [celery, "-A", "worker", "beat", "--loglevel", "INFO", "--schedule",
                                        str(self.workdir / "celerybeat-schedule")])
        wait_for(lambda: "beat: Starting" in log.read_text(errors="replace"), 30, "beat", interval=0.1, proc=proc,
                 log_path=log)
        return proc

    def log_of(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def dashboard_command(port: int, bind: str) -> list[str]:
    """The Procfile's ``dashboard`` line as an argument list (one worker process, threads)."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    host = f"[{bind}]" if ":" in bind else bind
    return [gunicorn, "--bind", f"{host}:{port}", "--workers", "1", "--threads", "8", "--timeout", "30",
            "dashboard:create_app()"]


def _http_ok(url: str) -> bool:
    import requests
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
