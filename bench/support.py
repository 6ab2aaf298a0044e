"""What every measure needs: environments, private Redis servers, instrumented workers, producers, cleanup.

A measure runs its processes through ``worker.cli.stack.Stack`` (each logs to a file under the run's
work directory and is stopped on exit), against the run's private ``redis-server`` (started by
``bench.runner`` on a free port; ``BENCH_REDIS_URL`` names another Redis instead) under its own key
prefix and queue, or in a private ``redis-server`` of its own when it counts memory or commands.
Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import socket
import sys
import time
from pathlib import Path

import redis
import requests
from celery import Celery

from worker.cli.stack import Stack, free_port, redis_answers, wait_for

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
API_KEY = "sk-bench-" + secrets.token_hex(8)
WEBHOOK_SECRET = "whsec-bench-" + secrets.token_hex(12)
HMAC_KEY = "hmac-bench-" + secrets.token_hex(12)
CELERY_BIN = str(Path(sys.executable).with_name("celery"))
GUNICORN_BIN = str(Path(sys.executable).with_name("gunicorn"))


@dataclasses.dataclass
class Context:
    """One bench run: ``quick`` or full, where processes keep their logs, the shared Redis URL."""

    quick: bool
    workroot: Path
    redis_url: str = REDIS_URL

    def workdir(self, name: str) -> Path:
        path = self.workroot / f"{name}-{secrets.token_hex(3)}"
        path.mkdir(parents=True, exist_ok=True)
        return path


def base_env() -> dict:
    """The parent's environment without any KIE_/CELERY_/BENCH_ variable, with the repo on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "CELERY_", "BENCH_"))}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    return env


def kq_env(redis_url: str, *, prefix: str, queue: str, workdir: Path, broker_url: str | None = None,
           callbacks_port: int | None = None, **extra: str) -> dict:
    """The project's environment for one deployment (callbacks on when ``callbacks_port`` is given)."""
    env = base_env()
    env.update({
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": broker_url or redis_url,
        "CELERY_RESULT_BACKEND": broker_url or redis_url,
        "KIE_API_KEY": API_KEY,
        "KIE_KEY_PREFIX": prefix,
        "KIE_QUEUE": queue,
        "KIE_STORAGE_DIR": str(workdir / "output"),
        "KIE_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
        "BENCH_REDIS": redis_url,
    })
    if callbacks_port:
        env.update({"KIE_CALLBACK_URL": f"http://127.0.0.1:{callbacks_port}", "KIE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                    "KIE_WEBHOOK_HMAC_KEY": HMAC_KEY})
    env.update(extra)
    return env


def names(kind: str) -> tuple[str, str]:
    """A fresh (key prefix, queue name) pair."""
    tag = secrets.token_hex(4)
    return f"bench-{kind}-{tag}", f"bench-q-{kind}-{tag}"


def start_sim(stack: Stack, *args: str) -> str:
    return stack.start_sim("--api-key", API_KEY, "--quiet", *args)


def start_celery(stack: Stack, name: str, app: str, queue: str, concurrency: int, *extra: str) -> None:
    """A ``celery -A <app> worker`` consuming ``queue``; returns when it is ready."""
    proc, log = stack.spawn(name, [CELERY_BIN, "-A", app, "worker", "--loglevel", "WARNING", "--concurrency",
                                   str(concurrency), "-Q", queue, "--hostname",
                                   f"{name}-{secrets.token_hex(3)}@{socket.gethostname()}", "--without-gossip",
                                   "--without-mingle", *extra])
    wait_for(lambda: _ready(stack, name), 90, f"worker {name}", interval=0.1, proc=proc, log_path=log)


def _ready(stack: Stack, name: str) -> bool:
    return "ready." in stack.log_of(name)


def start_kq_worker(stack: Stack, queue: str, concurrency: int = 4, name: str = "kq") -> None:
    """The project's worker (instrumented: ``bench.kq_app``).  Logs at INFO so readiness shows."""
    proc, log = stack.spawn(name, [CELERY_BIN, "-A", "bench.kq_app", "worker", "--loglevel", "INFO",
                                   "--concurrency", str(concurrency), "-Q", queue, "--hostname",
                                   f"{name}-{secrets.token_hex(3)}@{socket.gethostname()}", "--without-gossip",
                                   "--without-mingle"])
    wait_for(lambda: _ready(stack, name), 90, f"worker {name}", interval=0.1, proc=proc, log_path=log)


def start_baseline_worker(stack: Stack, queue: str, concurrency: int = 4, name: str = "base") -> None:
    proc, log = stack.spawn(name, [CELERY_BIN, "-A", "bench.celery_baseline", "worker", "--loglevel", "INFO",
                                   "--concurrency", str(concurrency), "-Q", queue, "--hostname",
                                   f"{name}-{secrets.token_hex(3)}@{socket.gethostname()}", "--without-gossip",
                                   "--without-mingle"])
    wait_for(lambda: _ready(stack, name), 90, f"worker {name}", interval=0.1, proc=proc, log_path=log)


def start_web(stack: Stack, app: str, port: int, *, workers: int = 2, threads: int = 4, name: str = "web",
              health: str = "/healthz") -> str:
    """gunicorn serving ``app`` with the settings of the Procfile's ``web`` as the stack runs it."""
    proc, log = stack.spawn(name, [GUNICORN_BIN, "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                                   "--threads", str(threads), "--timeout", "30", app])
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _http_ok(url + health), 60, name, proc=proc, log_path=log)
    return url


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def producer(broker_url: str, queue: str) -> Celery:
    """A send-only Celery app, as another service would have it."""
    app = Celery(f"bench-producer-{secrets.token_hex(3)}", set_as_current=False)
    app.conf.update(broker_url=broker_url, result_backend=broker_url, task_serializer="json",
                    accept_content=["json"], result_serializer="json", task_default_queue=queue,
                    broker_connection_retry_on_startup=True)
    return app


def private_redis(stack: Stack, name: str = "redis") -> str:
    """A private ``redis-server`` (no persistence) on a free port; its URL (db 0)."""
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc, log = stack.spawn(name, [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no"])
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: redis_answers(url), 15, name, proc=proc, log_path=log)
    return url


def wait_count(predicate, target: int, deadline_s: float, what: str, interval: float = 0.1) -> int:
    """Poll ``predicate()`` (a count) until it reaches ``target``; the count reached (never raises)."""
    deadline = time.monotonic() + deadline_s
    n = predicate()
    while n < target and time.monotonic() < deadline:
        time.sleep(interval)
        n = predicate()
    if n < target:
        print(f"  [{what}] only {n}/{target} after {deadline_s:.0f} s", flush=True)
    return n


def cleanup(redis_url: str, prefix: str | None = None, queues: tuple[str, ...] = (), keys: tuple[str, ...] = ()):
    """Delete the run's keys, queues and Celery results from the shared Redis."""
    r = redis.Redis.from_url(redis_url)
    try:
        pattern_keys = []
        if prefix:
            pattern_keys.append(f"{prefix}:*")
        for pattern in pattern_keys:
            for key in r.scan_iter(pattern, count=1000):
                r.delete(key)
        for key in keys:
            r.delete(key)
        for q in queues:
            r.delete(q, *[f"{q}\x06\x16{p}" for p in range(10)])
        # results of the run's tasks: result_extended stores the queue in the meta
        if queues:
            needles = [f'"queue": "{q}"'.encode() for q in queues]
            batch = []
            for key in r.scan_iter("celery-task-meta-*", count=2000):
                batch.append(key)
                if len(batch) >= 500:
                    _drop_results(r, batch, needles)
                    batch = []
            _drop_results(r, batch, needles)
    finally:
        r.close()


def _drop_results(r: redis.Redis, batch: list, needles: list) -> None:
    if not batch:
        return
    values = r.mget(batch)
    doomed = [k for k, v in zip(batch, values) if v and any(n in v for n in needles)]
    if doomed:
        r.delete(*doomed)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


__all__ = ["Context", "Stack", "free_port", "wait_for", "ROOT"]
