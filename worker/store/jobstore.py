"""The job store: job records in Redis and every state transition, each one atomic (Lua).

A *job* is one upstream generation (one ``job_id``, normally one kie.ai taskId).
A *waiter* is one ``kie.generate`` invocation waiting on a job, with its parked
chain; several callers with the same ``job_id`` are several waiters on one job.

States: ``accepted → submitting → submitted → succeeded | failed | timed_out``
(``rejected`` for invalid input).  ``accepted`` jobs sit in the due-ordered
``due:submit`` set until a worker claims them; a claim is a lease, so a claim held
by a dead worker expires and another worker takes the job.  ``submitted`` jobs sit
in ``due:check`` until their next status poll or timeout.

Every transition is a Lua script in ``lua/`` (see ``worker.store.scripts``); times
inside scripts come from the Redis server's clock, so hosts with skewed clocks
agree, and callers pass delays, not timestamps.  This module talks only to
Redis: no HTTP, no Celery.
"""

from __future__ import annotations

import json
import uuid

from .keys import Keys
from .metrics import Metrics
from .scripts import Scripts
from .states import TERMINAL, JobState


def _decode(value):
    return value.decode() if isinstance(value, bytes) else value


class JobStore:
    """Job records and their transitions.  ``redis`` is a ``redis.Redis`` client."""

    def __init__(self, redis, prefix: str):
        self.redis = redis
        self.keys = Keys(prefix)
        self._run = Scripts(redis)
        self.metrics = Metrics(redis, self.keys.metrics)

    # -- reading ---------------------------------------------------------------------------
    def get(self, job_id: str) -> dict | None:
        """The job record as a dict of str (numbers stay strings), or None."""
        raw = self.redis.hgetall(self.keys.job(job_id))
        if not raw:
            return None
        return {_decode(k): _decode(v) for k, v in raw.items()}

    def waiters(self, job_id: str) -> dict[str, dict]:
        raw = self.redis.hgetall(self.keys.waiters(job_id))
        return {_decode(k): json.loads(v) for k, v in raw.items()}

    def waiter_done(self, job_id: str, waiter_id: str) -> bool:
        return bool(self.redis.sismember(self.keys.waiters_done(job_id), waiter_id))

    def job_for_task(self, task_id: str) -> str | None:
        return _decode(self.redis.get(self.keys.task(task_id)))

    # -- transitions -----------------------------------------------------------------------
    def accept(self, job_id: str, *, model: str, input: dict, timeout: float, waiter_id: str,
               waiter: dict, first_claim_ms: int, tenant: str = "default",
               priority: int = 0) -> tuple[str, bool, bool]:
        """Create the job if new and attach a waiter.  Returns (state, created, waiter_added).

        A new job keeps ``tenant`` and ``priority``; a second call with the same id keeps the first's.
        """
        k = self.keys
        state, created, added = self._run(
            "accept", keys=[k.job(job_id), k.waiters(job_id), k.due_submit],
            args=[job_id, model, json.dumps(input, sort_keys=True), timeout, waiter_id, json.dumps(waiter),
                  first_claim_ms, tenant, int(priority)])
        return _decode(state), bool(created), bool(added)

    def reject(self, job_id: str, *, model: str, error: str) -> bool:
        return bool(self._run("reject", keys=[self.keys.job(job_id)], args=[job_id, model, error]))

    def claim_submit(self, job_id: str, *, lease_ms: int, unknown_grace_ms: int) -> tuple[str, int, str]:
        """Claim the job for a createTask attempt.  Returns (verdict, wait_ms, claim_token)."""
        token = uuid.uuid4().hex
        verdict, wait = self._run("claim_submit", keys=[self.keys.job(job_id), self.keys.due_submit],
                                  args=[job_id, lease_ms, token, unknown_grace_ms])
        return _decode(verdict), int(wait), token

    def mark_sending(self, job_id: str, token: str, *, send_lease_ms: int) -> int:
        """Record that a create is about to go out and extend the claim over the request by
        ``send_lease_ms``; returns the attempt number (0 = claim lost)."""
        return int(self._run("mark_sending", keys=[self.keys.job(job_id), self.keys.due_submit],
                             args=[token, job_id, send_lease_ms]))

    def defer(self, job_id: str, token: str, *, delay_ms: int, reason: str, error: str = "",
              count_error: bool = False, outcome_unknown: bool = False) -> bool:
        """Give back a claim and wait ``delay_ms`` in the submit queue."""
        return bool(self._run(
            "defer", keys=[self.keys.job(job_id), self.keys.due_submit],
            args=[job_id, token, max(0, int(delay_ms)), reason, error, int(count_error), int(outcome_unknown)]))

    def record_task(self, job_id: str, task_id: str, *, first_check_ms: int, timeout_ms: int,
                    source: str) -> str:
        k = self.keys
        return _decode(self._run("record_task", keys=[k.job(job_id), k.due_submit, k.due_check, k.task(task_id)],
                                 args=[job_id, task_id, first_check_ms, timeout_ms, source]))

    def finish(self, job_id: str, state: str, outcome: dict, *, error: str = "", credits=None) -> bool:
        """Move to a terminal state; True for the one call that did it.  ``credits`` (what the job
        consumed, when known) is kept on the record as ``credits``."""
        if state not in TERMINAL:
            raise ValueError(f"finish: state must be one of {sorted(TERMINAL)}, got {state!r}")
        k = self.keys
        return self._run("finish", keys=[k.job(job_id), k.due_submit, k.due_check],
                         args=[job_id, state, json.dumps(outcome), error,
                               "" if credits is None else repr(float(credits))]) == 1

    def record_callback(self, job_id: str, outcome: dict) -> tuple[str, int]:
        """Store a delivered callback's outcome (ignored once the job is terminal). Returns (state, deliveries)."""
        state, n = self._run("record_callback", keys=[self.keys.job(job_id)], args=[json.dumps(outcome)])
        return _decode(state), int(n)

    def claim_waiter(self, job_id: str, waiter_id: str) -> bool:
        """The exactly-once claim on finishing one waiter's chain."""
        return self.redis.sadd(self.keys.waiters_done(job_id), waiter_id) == 1

    def claim_due(self, which: str, *, horizon_ms: int, lease_ms: int, limit: int = 500) -> list[tuple[str, int]]:
        """Take due members of ``due:submit`` or ``due:check``: [(job_id, due_in_ms)]."""
        key = self.keys.due_submit if which == "submit" else self.keys.due_check
        flat = self._run("claim_due", keys=[key], args=[horizon_ms, lease_ms, limit])
        return [(_decode(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def wake_submits(self) -> int:
        """Make every job waiting for submission due now (after a pause was lifted)."""
        return int(self._run("wake", keys=[self.keys.due_submit], args=[]))

    def reschedule_check(self, job_id: str, delay_ms: int) -> bool:
        return bool(self._run("reschedule", keys=[self.keys.due_check, self.keys.job(job_id)],
                              args=[job_id, max(0, int(delay_ms)), JobState.SUBMITTED.value]))

    # -- metrics ---------------------------------------------------------------------------
    def incr(self, event: str, amount: float = 1) -> None:
        """Count an event of a job's life (``worker.store.metrics.EVENTS`` says which metrics it moves)."""
        self.metrics.count(event, amount)
