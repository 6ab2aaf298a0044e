"""The baselines: a plain Celery app, written the way people write it without kie-queue.

``bench.create`` is the baseline of the limiter measure (``bench/rate_limit.py``);
``bench.generate_and_poll`` that of the worker-time measure; ``bench.noop`` / ``bench.mark``
(``bench.tasktime``) serve the chain measures.  Every task's run time is recorded the same way as
in the project's instrumented worker (``bench.tasktime.install``).

This is what a user without kie-queue would write: one task that POSTs ``createTask`` with
``requests`` and carries ``rate_limit=...`` (a per-worker token bucket of capacity 1 in Celery 5:
the limit holds for each worker process separately, never for the account).  Celery's defaults
otherwise (prefetch multiplier 4, early acks), JSON messages.

A 429 (HTTP status or body code) is handled per ``BENCH_ON_429``:

* ``retry`` (default): ``self.retry(countdown=BENCH_RETRY_DELAY)`` (1 s), at most
  ``BENCH_MAX_RETRIES`` (100) times.  A fixed 1-s retry is generous to the baseline: Celery's own
  ``default_retry_delay`` is 180 s, and ``retry_backoff`` grows exponentially.  Retried messages go
  through the worker's rate-limit bucket again.
* ``none``: the 429 is counted (by the simulator) and the job is given up.

``bench.generate_and_poll(prompt)`` creates a task, then polls ``recordInfo`` every
``BENCH_POLL_INTERVAL`` (1 s) until it succeeds or fails (at most ``BENCH_POLL_TIMEOUT``, 900 s),
holding its worker process the whole time.

Configuration is environment only (the bench starts the workers with it): ``BENCH_BROKER_URL``,
``BENCH_QUEUE``, ``BENCH_SIM_URL``, ``BENCH_API_KEY``, ``BENCH_RATE_LIMIT`` (Celery syntax, e.g.
``2/s`` or ``0.5/s``).  Start a worker with ``celery -A bench.celery_baseline worker -Q $BENCH_QUEUE``.
"""

from __future__ import annotations

import json
import os
import time

import requests
from celery import Celery

from bench import tasktime

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/4")
QUEUE = os.environ.get("BENCH_QUEUE", "bench-baseline")
SIM_URL = os.environ.get("BENCH_SIM_URL", "http://127.0.0.1:8000").rstrip("/")
API_KEY = os.environ.get("BENCH_API_KEY", "kiesim-key")
RATE_LIMIT = os.environ.get("BENCH_RATE_LIMIT", "2/s")
ON_429 = os.environ.get("BENCH_ON_429", "retry")
RETRY_DELAY = float(os.environ.get("BENCH_RETRY_DELAY", "1"))
MAX_RETRIES = int(os.environ.get("BENCH_MAX_RETRIES", "100"))
POLL_INTERVAL = float(os.environ.get("BENCH_POLL_INTERVAL", "1"))
POLL_TIMEOUT = float(os.environ.get("BENCH_POLL_TIMEOUT", "900"))

app = Celery("bench_baseline", set_as_current=False)
app.conf.update(
    broker_url=BROKER_URL,
    result_backend=BROKER_URL,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    result_expires=3600,
)

_session = requests.Session()
tasktime.install()
tasktime.register_tasks(app)


@app.task(name="bench.create", bind=True, rate_limit=RATE_LIMIT, max_retries=MAX_RETRIES)
def create(self, prompt: str) -> dict:
    """POST one createTask; 429 → retry after a fixed delay (or give up, per ``BENCH_ON_429``)."""
    response = _session.post(
        SIM_URL + "/api/v1/jobs/createTask",
        json={"model": "google/nano-banana", "input": {"prompt": prompt}},
        headers={"Authorization": f"Bearer {API_KEY}", "User-Agent": "bench-baseline"},
        timeout=30,
    )
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = body.get("code", response.status_code)
    if code == 429 or response.status_code == 429:
        if ON_429 == "retry":
            raise self.retry(countdown=RETRY_DELAY)
        return {"outcome": "429", "attempts": self.request.retries + 1}
    if code != 200:
        return {"outcome": f"error {code}", "attempts": self.request.retries + 1}
    return {"outcome": "accepted", "taskId": (body.get("data") or {}).get("taskId"),
            "attempts": self.request.retries + 1}


@app.task(name="bench.generate_and_poll")
def generate_and_poll(prompt: str) -> dict:
    """Create one task, then poll recordInfo until it finished: the worker process waits all along."""
    headers = {"Authorization": f"Bearer {API_KEY}", "User-Agent": "bench-baseline"}
    created = _session.post(SIM_URL + "/api/v1/jobs/createTask", headers=headers, timeout=30,
                            json={"model": "google/nano-banana", "input": {"prompt": prompt}}).json()
    if created.get("code") != 200:
        raise RuntimeError(f"createTask answered {created.get('code')}: {created.get('msg')}")
    task_id = created["data"]["taskId"]
    deadline = time.monotonic() + POLL_TIMEOUT
    while time.monotonic() < deadline:
        info = _session.get(SIM_URL + "/api/v1/jobs/recordInfo", params={"taskId": task_id}, headers=headers,
                            timeout=30).json()
        data = info.get("data") or {}
        if data.get("state") == "success":
            return {"job_id": task_id, "task_id": task_id, "state": "success",
                    "result_urls": json.loads(data.get("resultJson") or "{}").get("resultUrls", [])}
        if data.get("state") == "fail":
            raise RuntimeError(f"generation failed: {data.get('failCode')} {data.get('failMsg')}")
        time.sleep(POLL_INTERVAL)
    raise TimeoutError(f"task {task_id} not finished after {POLL_TIMEOUT:g} s")
