"""A small real system for the unit tests of the job policy modules: see ``tests/unit/conftest.py``."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets

import requests

from kiesim import SimServer
from worker import runtime

MODEL = "google/nano-banana"


@dataclasses.dataclass
class System:
    rt: runtime.Runtime
    app: object
    sim: SimServer
    waiter_ids: list = dataclasses.field(default_factory=list)

    @property
    def store(self):
        return self.rt.store

    def accept(self, prompt: str, *, job_id: str | None = None, waiter: dict | None = None, timeout: float = 60,
               first_claim_ms: int = 0) -> str:
        """A job accepted as ``kie.generate`` accepts one, with one parked waiter; returns its id."""
        job_id = job_id or f"job-{secrets.token_hex(4)}"
        waiter = waiter or parked_waiter()
        self.waiter_ids.append(waiter["id"])
        self.store.accept(job_id, model=MODEL, input={"prompt": prompt}, timeout=timeout, waiter_id=waiter["id"],
                          waiter=waiter, first_claim_ms=first_claim_ms)
        return job_id

    def sent(self) -> list[dict]:
        """The task messages waiting in the deployment's queue: [{"task", "id", "args"}], oldest first."""
        raw = self.rt.redis.lrange(self.rt.settings.queue, 0, -1)
        messages = [json.loads(m) for m in reversed(raw)]
        out = []
        for m in messages:
            body = json.loads(base64.b64decode(m["body"]))
            out.append({"task": m["headers"]["task"], "id": m["headers"]["id"], "args": body[0]})
        return out

    def result(self, task_id: str):
        return self.app.AsyncResult(task_id)

    def sim_stats(self) -> dict:
        return requests.get(self.sim.url + "/_sim/stats", timeout=10).json()

    def sim_config(self, **knobs) -> dict:
        """Change kiesim's knobs over its HTTP control API (kept until changed back)."""
        answer = requests.post(self.sim.url + "/_sim/config", json=knobs, timeout=10)
        answer.raise_for_status()
        return answer.json()


def parked_waiter(*, chain: list | None = None, errbacks: list | None = None) -> dict:
    """A parked ``kie.generate`` request as ``worker.jobs.parking.capture`` stores it."""
    return {"id": f"gen-{secrets.token_hex(6)}", "task": "kie.generate", "chain": chain or [], "callbacks": [],
            "errbacks": errbacks or [], "chord": None, "group": None, "group_index": None, "root_id": None,
            "parent_id": None, "reply_to": None, "correlation_id": None, "args": [], "kwargs": {},
            "priority": None}


