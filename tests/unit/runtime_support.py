"""A per-test runtime for the job-level unit tests: the real Redis (the unit tests' database, the
test's own key prefix and queue), an in-process simulator over HTTP, and a send-only Celery app
whose result backend is that Redis.  No worker runs: a test plays the worker by calling the
``worker.jobs`` functions itself."""

from __future__ import annotations

import dataclasses
import uuid

from kiesim import SimConfig
from worker.celery_conf import producer
from worker.runtime import build
from worker.settings import Settings

API_KEY = "sk-unit-ops-" + "5e6f7a8b9c0d1e2f"
BASELINE = dataclasses.asdict(SimConfig(api_key=API_KEY, duration=0, rate_limit="off", small_images=True))


def runtime_for(sim_url: str, redis_url: str, prefix: str, **env):
    settings = Settings.from_env({"REDIS_URL": redis_url, "KIE_API_KEY": API_KEY, "KIE_BASE_URL": sim_url,
                                  "KIE_KEY_PREFIX": prefix, "KIE_QUEUE": f"{prefix}:queue", **env})
    return build(settings), producer(settings, name=f"unit-{prefix}")


def parked(task_id: str | None = None, chain: list | None = None) -> dict:
    """A parked ``kie.generate`` call as ``worker.jobs.parking.capture`` stores it."""
    return {"id": task_id or uuid.uuid4().hex, "task": "kie.generate", "chain": chain or [], "callbacks": [],
            "errbacks": [], "chord": None, "group": None, "group_index": None, "root_id": None, "parent_id": None,
            "reply_to": None, "correlation_id": None, "args": [], "kwargs": {}, "priority": None}


def accept(rt, job_id: str, prompt: str, *, waiter: dict | None = None, timeout: float = 60):
    waiter = waiter or parked()
    rt.store.accept(job_id, model="google/nano-banana", input={"prompt": prompt, "output_format": "png",
                                                               "image_size": "1:1"},
                    timeout=timeout, waiter_id=waiter["id"], waiter=waiter, first_claim_ms=2000)
    return waiter
