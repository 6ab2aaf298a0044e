"""The job store: job records in Redis and every state transition, each one atomic (Lua).

A *job* is one upstream generation (one ``job_id``, normally one kie.ai taskId).
A *waiter* is one ``kie.generate`` invocation waiting on a job, with its parked
chain; several callers with the same ``job_id`` are several waiters on one job.

States: ``accepted → submitting → submitted → succeeded | failed | timed_out``
(``rejected`` for invalid input).  ``accepted`` jobs sit in the due-ordered
``due:submit`` set until a worker claims them; a claim is a lease, so a claim held
by a dead worker expires and another worker takes the job.  ``submitted`` jobs sit
in ``due:check`` until their next status poll or timeout.  A finished job sits in ``due:resume``
until every waiter's chain is marked continued (resuming one is a lease: claim, publish, mark), and
all its keys expire ``retention_s`` after the finish.

Every transition is a Lua script in ``lua/`` (see ``worker.store.scripts``); times
inside scripts come from the Redis server's clock, so hosts with skewed clocks
agree, and callers pass delays, not timestamps.  This module talks only to
Redis: no HTTP, no Celery.
"""

from __future__ import annotations

import json
import logging
import uuid

from .keys import Keys
from .scripts import Scripts
from .states import TERMINAL, JobState


def _decode(value):
    return value.decode() if isinstance(value, bytes) else value


log = logging.getLogger("kie_queue.jobstore")

REPLICA_WAIT_MS = 1_000
"""How long a durable transition waits for its replicas' acknowledgement (``KIE_REDIS_MIN_REPLICAS``)."""

RESUME_LEASE_MS = 10_000
"""How long a waiter's resumption is leased to the process that claimed it (publish, then mark done);
a lease that ends undone is taken over by the sweep, which publishes again."""

DEFAULT_RETENTION_S = 7 * 86400.0


class JobStore:
    """Job records and their transitions.  ``redis`` is a ``redis.Redis`` client.

    ``retention_s`` (``KIE_JOB_RETENTION``): a finished job's keys expire this long after it finished.
    ``min_replicas`` (``KIE_REDIS_MIN_REPLICAS``): after the transitions that must survive a failover
    (accept, task recorded, finish, waiter done) wait up to ``REPLICA_WAIT_MS`` for that many replicas
    to acknowledge (``WAIT``, on the same connection as the write); a shortfall is logged and counted
    (``replica_wait_short``), never an error: the write is on the primary either way.
    """

    def __init__(self, redis, prefix: str, *, retention_s: float = DEFAULT_RETENTION_S, min_replicas: int = 0):
        self.redis = redis
        self.keys = Keys(prefix)
        self._run = Scripts(redis)
        self.retention_ms = int(retention_s * 1000)
        self.min_replicas = int(min_replicas)

    def _durable(self, what: str, name: str, keys: list, args: list):
        """Run script ``name``; with ``min_replicas``, in one pipeline with ``WAIT`` after it."""
        if self.min_replicas <= 0:
            return self._run(name, keys=keys, args=args)
        pipe = self.redis.pipeline(transaction=False)
        self._run(name, keys=keys, args=args, client=pipe)
        pipe.execute_command("WAIT", self.min_replicas, REPLICA_WAIT_MS)
        result, acked = pipe.execute()
        if int(acked) < self.min_replicas:
            self.incr("replica_wait_short")
            log.warning("%s: %d of %d replicas acknowledged within %d ms", what, int(acked), self.min_replicas,
                        REPLICA_WAIT_MS)
        return result

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
               waiter: dict, first_claim_ms: int) -> tuple[str, bool, bool]:
        """Create the job if new and attach a waiter.  Returns (state, created, waiter_added)."""
        k = self.keys
        state, created, added = self._durable(
            "accept", "accept", keys=[k.job(job_id), k.waiters(job_id), k.due_submit, k.due_resume],
            args=[job_id, model, json.dumps(input, sort_keys=True), timeout, waiter_id, json.dumps(waiter),
                  first_claim_ms, RESUME_LEASE_MS])
        return _decode(state), bool(created), bool(added)

    def reject(self, job_id: str, *, model: str, error: str) -> bool:
        return bool(self._run("reject", keys=[self.keys.job(job_id)], args=[job_id, model, error, self.retention_ms]))

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
        return _decode(self._durable(
            "task recorded", "record_task", keys=[k.job(job_id), k.due_submit, k.due_check, k.task(task_id)],
            args=[job_id, task_id, first_check_ms, timeout_ms, source, self.retention_ms]))

    def finish(self, job_id: str, state: str, outcome: dict, *, error: str = "") -> bool:
        """Move to a terminal state; True for the one call that did it."""
        if state not in TERMINAL:
            raise ValueError(f"finish: state must be one of {sorted(TERMINAL)}, got {state!r}")
        k = self.keys
        tasks = (_decode(self.redis.hget(k.job(job_id), "task_ids")) or "").split()
        return self._durable(
            "finish", "finish", keys=[k.job(job_id), k.due_submit, k.due_check, k.due_resume, k.waiters(job_id),
                                      k.waiters_done(job_id), k.waiter_leases(job_id), *(k.task(t) for t in tasks)],
            args=[job_id, state, json.dumps(outcome), error, self.retention_ms, RESUME_LEASE_MS]) == 1

    def record_callback(self, job_id: str, outcome: dict) -> tuple[str, int]:
        """Store a delivered callback's outcome (ignored once the job is terminal). Returns (state, deliveries)."""
        state, n = self._run("record_callback", keys=[self.keys.job(job_id)], args=[json.dumps(outcome)])
        return _decode(state), int(n)

    def claim_waiter(self, job_id: str, waiter_id: str, *, lease_ms: int = RESUME_LEASE_MS) -> tuple[str, bool] | None:
        """Lease the resumption of one waiter's chain.  Returns (lease token, taken_over) — taken_over
        when an earlier holder's lease expired undone — or None when it is done or leased to a live holder."""
        k, token = self.keys, uuid.uuid4().hex
        claimed, taken_over = self._run("claim_waiter", keys=[k.waiters_done(job_id), k.waiter_leases(job_id),
                                                              k.due_resume],
                                        args=[waiter_id, token, lease_ms, job_id])
        return (token, bool(taken_over)) if claimed else None

    def mark_waiter_done(self, job_id: str, waiter_id: str, token: str, *, drop_parked: bool) -> bool:
        """Mark the waiter's chain continued (after the broker accepted its next step); ``drop_parked``
        deletes its parked chain.  False if the lease had been taken over by another process."""
        k = self.keys
        return self._durable("waiter done", "mark_waiter_done",
                             keys=[k.waiters_done(job_id), k.waiter_leases(job_id), k.waiters(job_id), k.job(job_id)],
                             args=[waiter_id, token, self.retention_ms, int(drop_parked)]) == 1

    def resume_settled(self, job_id: str) -> bool:
        """Take the job out of ``due:resume`` if every waiter is marked done."""
        k = self.keys
        return self._run("resume_settled", keys=[k.waiters(job_id), k.waiters_done(job_id), k.due_resume],
                         args=[job_id]) == 1

    def claim_due(self, which: str, *, horizon_ms: int, lease_ms: int, limit: int = 500) -> list[tuple[str, int]]:
        """Take due members of ``due:submit``, ``due:check`` or ``due:resume``: [(job_id, due_in_ms)]."""
        key = {"submit": self.keys.due_submit, "check": self.keys.due_check, "resume": self.keys.due_resume}[which]
        flat = self._run("claim_due", keys=[key], args=[horizon_ms, lease_ms, limit])
        return [(_decode(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def wake_submits(self) -> int:
        """Make every job waiting for submission due now (after a pause was lifted)."""
        return int(self._run("wake", keys=[self.keys.due_submit], args=[]))

    def reschedule_check(self, job_id: str, delay_ms: int) -> bool:
        return bool(self._run("reschedule", keys=[self.keys.due_check, self.keys.job(job_id)],
                              args=[job_id, max(0, int(delay_ms)), JobState.SUBMITTED.value]))

    # -- metrics ---------------------------------------------------------------------------
    def incr(self, counter: str, amount: int = 1) -> None:
        self.redis.hincrby(self.keys.metrics, counter, amount)

    def counters(self) -> dict[str, int]:
        return {_decode(k): int(v) for k, v in self.redis.hgetall(self.keys.metrics).items()}
