"""``kie-queue demo``: the whole system on embedded defaults, end to end, with a live table of its jobs.

Starts (or reuses) Redis, the simulator, the webhook (gunicorn), a worker and beat as real
processes; sends a batch of ``generate | download`` chains; shows a live table of the jobs on a
terminal; prints a summary table (job, state, seconds, file) and exits 0 only if every job
succeeded.  The demo keeps to itself: its own key prefix and queue (``kie-demo-<random>``), a
Redis database of its own by default (``--redis-url``), and after the batch it deletes every key
it made (``cleanup``).  With ``KIE_API_KEY`` and ``KIE_BASE_URL`` set it talks to that service
instead of the simulator (callbacks only if ``KIE_CALLBACK_URL`` is set; otherwise polling).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import sys
import time
from pathlib import Path

from .output import styled_state, table
from .stack import Stack, free_port

PROMPTS = ["a lighthouse at dawn, watercolour", "a red fox in fresh snow", "a tiny robot watering a fern",
           "a bowl of ramen, studio lighting", "an isometric city block at night"]
SIZES = ["1:1", "16:9", "9:16", "4:3", "3:2"]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def run_demo(*, jobs: int = 20, concurrency: int = 4, workdir: str = ".kie-demo", fail_rate: float = 0.0,
             timeout: float = 180.0, redis_url: str = DEFAULT_REDIS_URL, storage: str | None = None,
             keep: bool = False) -> int:
    real = bool(os.environ.get("KIE_API_KEY") and os.environ.get("KIE_BASE_URL"))
    workdir = Path(workdir).resolve()
    out = _storage(storage)
    env = {k: v for k, v in os.environ.items() if k != "KIE_STORAGE_DIR"}
    env.setdefault("PYTHONUNBUFFERED", "1")
    console = _console()
    with Stack(workdir, env) as stack:
        console.print("kie-queue demo: starting services ...")
        redis_url = stack.ensure_redis(redis_url)
        name = f"kie-demo-{secrets.token_hex(3)}"
        stack.env.update({
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", redis_url),
            "CELERY_RESULT_BACKEND": os.environ.get("CELERY_RESULT_BACKEND", redis_url),
            "KIE_STORAGE_URL": out.url,
            "KIE_KEY_PREFIX": name,
            "KIE_QUEUE": name,
        })
        if not real:
            api_key, hmac_key = "demo-" + secrets.token_hex(8), secrets.token_hex(16)
            web_port = free_port()
            sim_url = stack.start_sim("--api-key", api_key, "--hmac-key", hmac_key, "--duration", "3",
                                      "--duration-jitter", "3", "--fail-rate", str(fail_rate))
            console.print(f"  simulator   {sim_url}  (stands in for kie.ai)")
            stack.env.update({
                "KIE_API_KEY": api_key, "KIE_BASE_URL": sim_url,
                "KIE_CALLBACK_URL": f"http://127.0.0.1:{web_port}",
                "KIE_WEBHOOK_SECRET": secrets.token_hex(16), "KIE_WEBHOOK_HMAC_KEY": hmac_key,
                "KIE_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
            })
            web_url = stack.start_webhook(port=web_port)
            console.print(f"  webhook     {web_url}")
        elif os.environ.get("KIE_CALLBACK_URL"):
            web_url = stack.start_webhook()
            console.print(f"  webhook     {web_url} (public URL {os.environ['KIE_CALLBACK_URL']})")
        stack.start_worker("worker", concurrency=concurrency)
        stack.start_beat()
        from ..redact import redact_url
        console.print(f"  worker ×{concurrency}, beat, redis {redact_url(redis_url)}, key prefix {name}")
        console.print(f"  dashboard   {stack.start_dashboard()}  (jobs, limiter, gallery: open it in a browser)")
        os.environ.update(stack.env)
        os.environ.pop("KIE_STORAGE_DIR", None)   # KIE_STORAGE_URL says it now
        from ..runtime import reset
        reset()
        batch = Batch(jobs)
        try:
            code = batch.run(console, timeout, out, workdir)
            if keep:
                _stay_up(console)
            return code
        finally:
            stack.stop()
            removed = cleanup(redis_url, name, batch.task_ids(), [j for j, _ in batch.sent])
            console.print(f"removed the demo's {removed} Redis keys (prefix {name})")


def _stay_up(console) -> None:
    """``--keep``: leave the services running until Ctrl-C or SIGTERM."""
    import signal
    import threading

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print("services stay up (--keep): press Ctrl-C to stop them")
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _storage(option: str | None):
    """The demo's result storage: ``--storage``, else the environment's (``KIE_STORAGE_URL``/``_DIR``), else
    ``./kie-output``; checked before anything starts, so a missing bucket is one clear line, not a dead worker."""
    from ..results.storage.health import startup_problem
    from ..settings import Settings, StorageLocation

    env = dict(os.environ)
    if option:
        location = StorageLocation.parse(option, "--storage")
        env.pop("KIE_STORAGE_DIR", None)
        env["KIE_STORAGE_URL"] = location.url
    s = Settings.from_env(env)
    if option:
        s = dataclasses.replace(s, storage=location)
    problem = startup_problem(s)
    if problem is not None:
        raise problem
    return s.storage


def _console():
    from rich.console import Console

    # piped: wide enough that a row of the summary never wraps
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


class Batch:
    """The demo's jobs: sent as ``generate | download`` chains, followed until done."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.run_id = secrets.token_hex(3)
        self.sent: list[tuple[str, object]] = []
        self.started = time.time()

    def task_ids(self) -> list[str]:
        ids = []
        for _, res in self.sent:
            ids += [res.id] + ([res.parent.id] if res.parent is not None else [])
        return ids

    def run(self, console, timeout: float, out, workdir: Path) -> int:
        from rich.live import Live

        from ..celery_app import app
        from ..runtime import runtime
        from ..tasks import download, generate

        app.conf.task_default_queue = os.environ["KIE_QUEUE"]
        store = runtime().store
        for i in range(self.jobs):
            job_id = f"demo-{self.run_id}-{i:03d}"
            inp = {"prompt": f"{PROMPTS[i % len(PROMPTS)]} #{i}", "image_size": SIZES[i % len(SIZES)]}
            self.sent.append((job_id, (generate.s(input=inp, job_id=job_id) | download.s()).apply_async()))
        console.print(f"sent {self.jobs} jobs (generate | download)")
        deadline = self.started + timeout
        rows = self._rows(store)
        with Live(self._table(rows), console=console, refresh_per_second=4, transient=True) as live:
            while time.time() < deadline and not all(r[4] for r in rows):
                time.sleep(0.5)
                rows = self._rows(store)
                live.update(self._table(rows))
        rows = self._rows(store)
        console.print(self._table(rows, plain=not console.is_terminal))
        failed = sum(1 for r in rows if r[1] != "succeeded")
        total = time.time() - self.started
        if failed:
            print(f"\n{failed} of {self.jobs} jobs did not succeed ({total:.1f} s). Logs: {workdir}/*.log",
                  file=sys.stderr)
            return 1
        where = out.path if out.scheme == "file" else out.url
        console.print(f"\nall {self.jobs} jobs succeeded in {total:.1f} s; images in {where}")
        return 0

    def _rows(self, store) -> list[tuple]:
        rows = []
        for job_id, res in self.sent:
            job = store.get(job_id) or {}
            secs = ""
            if job.get("finished_at") and job.get("created_at"):
                secs = f"{_seconds(job['finished_at']) - _seconds(job['created_at']):.1f}"
            path, ready = "", res.ready()
            if ready and res.successful():
                files = res.result.get("files") or []
                path = (_shown_path(files[0]["path"]) if files[0].get("path") else files[0]["uri"]) if files else ""
                state = "succeeded"
            elif ready:
                state = f"failed: {res.result}"
            else:
                state = job.get("state", "queued")
                state = "downloading" if state == "succeeded" else state
            rows.append((job_id, state, secs, path, ready))
        return rows

    def _table(self, rows, plain: bool = False):
        done = sum(1 for r in rows if r[4])
        title = None if plain else f"{done}/{len(rows)} done, {time.time() - self.started:.0f} s"
        return table(["job", "state", ("seconds", "right"), "file"],
                     [(r[0], styled_state(r[1]), r[2], r[3]) for r in rows], title=title, plain=plain)


def _shown_path(path: str) -> str:
    """``path`` relative to the current folder when it is inside it, else as it is."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _seconds(value) -> float:
    """A record time as seconds: epoch milliseconds (as the store keeps them) or ISO-8601."""
    try:
        number = float(value)
        return number / 1000 if number > 1e11 else number
    except (TypeError, ValueError):
        from datetime import datetime
        return datetime.fromisoformat(str(value)).timestamp()


def cleanup(redis_url: str, prefix: str, task_ids: list[str], job_ids: list[str]) -> int:
    """Delete the demo's keys: its job store (``prefix:*``), its queue's, and the results of its tasks
    (the chains' and the internal ``kie.submit``/``kie.check``/``kie.complete`` that ran on its queue)."""
    import redis

    r = redis.Redis.from_url(redis_url)
    doomed = set(r.scan_iter(f"{prefix}*", count=1000))              # job store, queue and its priority lists
    doomed |= set(r.scan_iter(f"_kombu.binding.{prefix}*", count=1000))
    known, jobs = {f"celery-task-meta-{t}".encode() for t in task_ids}, set(job_ids)
    for key in r.scan_iter("celery-task-meta-*", count=1000):
        if key in known:
            doomed.add(key)
            continue
        try:
            meta = json.loads(r.get(key) or b"{}")
        except ValueError:
            continue
        if meta.get("queue") == prefix or any(a in jobs for a in (meta.get("args") or []) if isinstance(a, str)):
            doomed.add(key)
    if doomed:
        r.delete(*doomed)
    return len(doomed)
