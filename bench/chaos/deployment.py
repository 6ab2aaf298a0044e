"""A whole deployment for one chaos run: simulator, webhook under gunicorn, beat, N workers and the
checking worker, all reaching one broker and one Redis job store, with handles to break each part.

Workers are named ``w1, w2, ...`` (a replacement gets the next number).  With ``hosts`` (see
``bench.chaos.netns``) every worker runs in its own network namespace and the servers bind on the
host side's address.  Secrets (API key, webhook secret, HMAC key) are made per run and never printed.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
from pathlib import Path

from celery import Celery

from worker.cli.stack import Stack, free_port, wait_for

from .servers import children

ROOT = Path(__file__).resolve().parents[2]


class ChaosDeployment:
    def __init__(self, workdir: Path, *, redis_url: str, broker_url: str, host: str = "127.0.0.1",
                 sim_args: tuple[str, ...] = (), extra_env: dict | None = None, hosts=None,
                 secrets_: dict | None = None):
        self.name = secrets.token_hex(3)
        self.prefix = f"chaos-{self.name}"
        self.queue = f"kq-{self.name}"
        self.check_queue = f"check-{self.name}"
        self.host, self.hosts = host, hosts
        self.redis_url, self.broker_url = redis_url, broker_url
        given = secrets_ or {}     # api_key, hmac_key, webhook_secret (a test passes the ones its scan knows)
        self.api_key = given.get("api_key") or secrets.token_hex(16)
        self.hmac_key = given.get("hmac_key") or secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "CELERY_"))}
        env.update({
            "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
            "REDIS_URL": redis_url, "CELERY_BROKER_URL": broker_url, "CELERY_RESULT_BACKEND": redis_url,
            "KIE_API_KEY": self.api_key, "KIE_KEY_PREFIX": self.prefix, "KIE_QUEUE": self.queue,
            "KIE_STORAGE_DIR": str(workdir / "output"), "KIE_DOWNLOAD_ALLOW_HOSTS": host,
            "KIE_WEBHOOK_SECRET": given.get("webhook_secret") or secrets.token_hex(16), "KIE_WEBHOOK_HMAC_KEY": self.hmac_key,
            "CHAOS_PREFIX": self.prefix, "CHAOS_QUEUE": self.check_queue,
            **(extra_env or {}),
        })
        self.stack = Stack(workdir, env)
        self.sim_args = sim_args
        self.workers: list[str] = []
        self._next_worker = 1
        self.web_port = free_port()
        self.sim_url = self.web_url = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, *, workers: int, concurrency: int) -> "ChaosDeployment":
        self.concurrency = concurrency
        self.sim_url = self.stack.start_sim("--api-key", self.api_key, "--hmac-key", self.hmac_key, *self.sim_args,
                                            host=self.host)
        self.stack.env["KIE_BASE_URL"] = self.sim_url
        self.stack.env["KIE_CALLBACK_URL"] = f"http://{self.host}:{self.web_port}"
        self.start_webhook()
        for _ in range(workers):
            self.add_worker()
        self.start_checker()
        self.stack.start_beat()
        self.producer = producer(self.stack.env)
        return self

    def stop(self) -> None:
        self.stack.stop()

    # -- parts -------------------------------------------------------------------------------
    def start_webhook(self) -> None:
        self.web_url = self.stack.start_webhook(port=self.web_port, host=self.host)

    def stop_webhook(self) -> None:
        self.stack.kill("web", signal.SIGTERM)

    def add_worker(self, wait: bool = True) -> str:
        name = f"w{self._next_worker}"
        self._next_worker += 1
        wrap = self.hosts.wrap(name) if self.hosts else None
        self.stack.start_worker(name, concurrency=self.concurrency, wait=wait, wrap=wrap)
        self.workers.append(name)
        return name

    def kill_worker(self, name: str) -> None:
        """SIGKILL the whole worker (main process and pool), as a host crash would."""
        self.stack.kill(name, signal.SIGKILL)
        self.workers.remove(name)
        if self.hosts:
            self.hosts.release(name)

    def kill_pool_process(self, name: str, rnd) -> bool:
        """SIGKILL one pool process of worker ``name`` (Celery re-queues its task at once)."""
        proc = self.stack.running(name)
        kids = children(proc.pid) if proc else []
        if not kids:
            return False
        try:
            os.kill(rnd.choice(kids), signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def start_checker(self) -> None:
        celery = str(Path(sys.executable).with_name("celery"))
        proc, log = self.stack.spawn("checker", [celery, "-A", "bench.chaos.checker", "worker", "--loglevel", "INFO",
                                                 "--concurrency", "2", "-Q", self.check_queue, "--hostname",
                                                 f"check-{self.name}@%h", "--without-gossip", "--without-mingle"])
        wait_for(lambda: "ready." in log.read_text(errors="replace"), 60, "checker worker", interval=0.1, proc=proc,
                 log_path=log)

    # -- signatures --------------------------------------------------------------------------
    def chain(self, job_id: str, prompt: str, *, link_error: bool):
        p = self.producer
        gen = p.signature("kie.generate", kwargs={"input": {"prompt": prompt}, "job_id": job_id}, queue=self.queue)
        dl = p.signature("kie.download", queue=self.queue)
        check = p.signature("chaos.record", kwargs={"job": job_id}, queue=self.check_queue)
        c = gen | dl | check
        if link_error:
            c.link_error(p.signature("chaos.on_error", kwargs={"job": job_id}, queue=self.check_queue))
        return c



def producer(env: dict) -> Celery:
    """A send-only Celery app configured as the product's own producers are (broker, backend,
    Sentinel master, JSON), from the deployment's environment."""
    from worker.celery_conf import producer as kie_producer
    from worker.settings import Settings

    return kie_producer(Settings.from_env(env), name=f"chaos-producer-{secrets.token_hex(3)}")
