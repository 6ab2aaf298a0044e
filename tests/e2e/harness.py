"""Test harness: a real deployment (simulator, webhook, workers, beat) per test module, plus a producer.

A ``Deployment`` runs the Procfile's processes through ``worker.cli.stack.Stack`` with its own Redis key
prefix, its own queue names and a Redis database reserved for tests, so deployments never see each
other's jobs.  The producer is a bare Celery app that knows only the broker URL, like another
service that enqueues ``kie.generate`` by name.  ``user.record`` is a "user task" served by a
separate worker (``tests/userapp.py``) on its own queue; it stores what it received in Redis.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import redis
import requests
from celery import Celery

from worker.cli.stack import Stack, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
TEST_DB = int(os.environ.get("KIE_TEST_REDIS_DB", "3"))
REDIS_URL = f"redis://127.0.0.1:6379/{TEST_DB}"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"

from secretscan import API_KEY, HMAC_KEY, SECOND_API_KEY, SECRETS, WEBHOOK_SECRET  # noqa: F401 (used by the tests)


class Deployment:
    def __init__(self, workdir: Path, *, callbacks: bool = True, hmac: bool = True, broker_url: str | None = None,
                 sim_args: tuple[str, ...] = (), extra_env: dict | None = None):
        self.name = secrets.token_hex(4)
        self.prefix = f"t-{self.name}"
        self.queue = f"q-{self.name}"
        self.user_queue = f"user-{self.name}"
        self.broker_url = broker_url or REDIS_URL
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "CELERY_"))}
        env.update({
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": REDIS_URL,
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_RESULT_BACKEND": REDIS_URL,
            "KIE_API_KEY": API_KEY,
            "KIE_KEY_PREFIX": self.prefix,
            "KIE_QUEUE": self.queue,
            "KIE_STORAGE_URL": str(workdir / "output"),
            "KIE_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
            "KIE_USER_QUEUE": self.user_queue,
            **(extra_env or {}),
        })
        self.stack = Stack(workdir, env)
        self.callbacks = callbacks
        self.hmac = hmac
        self.sim_args = sim_args
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.sim_url = self.web_url = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, *, workers: int = 1, concurrency: int = 2, beat: bool = True, user_worker: bool = True):
        sim_args = ["--api-key", API_KEY, "--duration", "1", "--small-images", *self.sim_args]
        if self.hmac:
            sim_args += ["--hmac-key", HMAC_KEY]
        self.sim_url = self.stack.start_sim(*sim_args)
        self.stack.env["KIE_BASE_URL"] = self.sim_url
        if self.callbacks:
            port = free_port()
            self.stack.env.update({"KIE_CALLBACK_URL": f"http://127.0.0.1:{port}",
                                   "KIE_WEBHOOK_SECRET": WEBHOOK_SECRET})
            if self.hmac:
                self.stack.env["KIE_WEBHOOK_HMAC_KEY"] = HMAC_KEY
            self.web_url = self.stack.start_webhook(port=port)
        for i in range(workers):
            self.stack.start_worker(f"w{i + 1}", concurrency=concurrency)
        if user_worker:
            self.start_user_worker()
        if beat:
            self.stack.start_beat()
        self.producer = producer(self.broker_url, self.queue)
        return self

    def start_user_worker(self, queue: str | None = None, env: dict | None = None, name: str = "userworker"):
        """The other team's worker (``tests/e2e/userapp.py``) on ``queue`` (default ``user_queue``)."""
        import sys
        celery = str(Path(sys.executable).with_name("celery"))
        queue = queue or self.user_queue
        proc, log = self.stack.spawn(name, [celery, "-A", "tests.e2e.userapp", "worker", "--loglevel", "INFO",
                                            "--concurrency", "1", "-Q", queue,
                                            "--hostname", f"{name}-{self.name}@%h", "--without-gossip",
                                            "--without-mingle"], env=env)
        wait_for(lambda: "ready." in log.read_text(errors="replace"), 60, "user worker", interval=0.1, proc=proc,
                 log_path=log)

    def stop(self):
        self.stack.stop()
        for key in self.redis.scan_iter(f"{self.prefix}:*", count=1000):
            self.redis.delete(key)

    # -- helpers -----------------------------------------------------------------------------
    def generate(self, prompt: str, *, job_id: str | None = None, timeout: float | None = None, **inp):
        kwargs = {"input": {"prompt": prompt, **inp}}
        if job_id:
            kwargs["job_id"] = job_id
        if timeout:
            kwargs["timeout"] = timeout
        # an explicit queue: a chain step sent by another service's worker would otherwise go to
        # that worker's default queue
        return self.producer.signature("kie.generate", kwargs=kwargs, queue=self.queue)

    def download(self):
        return self.producer.signature("kie.download", queue=self.queue)

    def user_task(self, tag: str):
        return self.producer.signature("user.record", kwargs={"tag": tag}, queue=self.user_queue)

    def user_errback(self, tag: str):
        return self.producer.signature("user.on_error", kwargs={"tag": tag}, queue=self.user_queue)

    def recorded(self, tag: str) -> list:
        return [json.loads(x) for x in self.redis.lrange(f"usertask:{tag}", 0, -1)]

    def wait_recorded(self, tag: str, n: int = 1, timeout: float = 60) -> list:
        wait_for(lambda: len(self.recorded(tag)) >= n, timeout, f"user task {tag}", interval=0.1)
        return self.recorded(tag)

    def job(self, job_id: str) -> dict | None:
        raw = self.redis.hgetall(f"{self.prefix}:job:{job_id}")
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def wait_job_state(self, job_id: str, states, timeout: float = 60) -> dict:
        states = (states,) if isinstance(states, str) else tuple(states)
        return wait_for(lambda: (j := self.job(job_id)) and j["state"] in states and j, timeout,
                        f"job {job_id} in {states}", interval=0.1)

    def sim(self, path: str, method: str = "GET", **kw):
        r = requests.request(method, self.sim_url + path, timeout=10, **kw)
        r.raise_for_status()
        return r.json()

    def sim_stats(self) -> dict:
        return self.sim("/_sim/stats")

    def sim_config(self, **knobs) -> dict:
        return self.sim("/_sim/config", "POST", json=knobs)

    def creates_for(self, prompt: str) -> int:
        return int(self.sim_stats().get("prompts", {}).get(prompt, 0))


def producer(broker_url: str, queue: str) -> Celery:
    """A Celery app as another service would have it: broker and backend URLs, JSON, and task names."""
    app = Celery(f"producer-{secrets.token_hex(3)}", set_as_current=False)
    app.conf.update(broker_url=broker_url, result_backend=REDIS_URL, task_serializer="json",
                    accept_content=["json"], result_serializer="json", task_default_queue=queue,
                    broker_connection_retry_on_startup=True)
    return app


def unique(text: str) -> str:
    return f"{text} {secrets.token_hex(4)}"


def monotonic_deadline(seconds: float) -> float:
    return time.monotonic() + seconds
