"""The job store: job records in Redis and every state transition, each one atomic (Lua).

A *job* is one upstream generation (one ``job_id``, normally one kie.ai taskId).
A *waiter* is one ``kie.generate`` invocation waiting on a job, with its parked
chain; several callers with the same ``job_id`` are several waiters on one job.

States: ``accepted → submitting → submitted → succeeded | failed | timed_out | cancelled``
(``rejected`` for invalid input); a failed, timed-out or cancelled job may be re-run as its next
*generation* (:meth:`JobStore.rerun`, :meth:`JobStore.regenerate`: a new upstream task).  Every
transition appends an event to the job's timeline in the same Lua step.  ``accepted`` jobs sit in the due-ordered
``due:submit`` set until a worker claims them; a claim is a lease, so a claim held
by a dead worker expires and another worker takes the job.  ``submitted`` jobs sit
in ``due:check`` until their next status poll or timeout.  A finished job sits in ``due:resume``
until every waiter's chain is marked continued (resuming one is a lease: claim, publish, mark), and
all its keys expire ``retention_s`` after the finish (a re-run makes them live again).

Every transition is a Lua script in ``lua/`` (see ``worker.store.scripts``); times
inside scripts come from the Redis server's clock, so hosts with skewed clocks
agree, and callers pass delays, not timestamps.  This module talks only to
Redis: no HTTP, no Celery.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from .keys import Keys
from .metrics import Metrics
from .scripts import Scripts
from .states import TERMINAL, JobState


def _compact(value) -> str:
    """JSON without the spaces after separators: a parked chain is most of a job's memory in Redis.
    (Not for the input: its stored text is compared when a job id comes again, see canonical_input.)"""
    return json.dumps(value, separators=(",", ":"))


def _decode(value):
    return value.decode() if isinstance(value, bytes) else value


def canonical_input(input: dict) -> str:
    """The stored form of a job's input: JSON with sorted keys, so the order of keys never matters
    when a job id is used again (the same text is the same input)."""
    return json.dumps(input, sort_keys=True)


log = logging.getLogger("kie_queue.jobstore")

REPLICA_WAIT_MS = 1_000
"""How long a durable transition waits for its replicas' acknowledgement (``KIE_REDIS_MIN_REPLICAS``)."""

RESUME_LEASE_MS = 10_000
"""How long a waiter's resumption is leased to the process that claimed it (publish, then mark done);
a lease that ends undone is taken over by the sweep, which publishes again."""

DEFAULT_RETENTION_S = 7 * 86400.0

TRIM_BATCH = 500
"""Index entries one ``trim_index`` script looks at: each batch is a short script, so Redis is never held long."""

TRIM_BUDGET_S = 1.0
"""How long one ``trim_index`` goes on taking batches, so a sweep over a huge backlog never stalls."""


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
        self.metrics = Metrics(redis, self.keys.metrics)
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

    def timeline(self, job_id: str) -> list[dict]:
        """The job's events, oldest first: ``[{"t": epoch ms, "event": str, "detail": str}]``."""
        return [json.loads(e) for e in self.redis.lrange(self.keys.timeline(job_id), 0, -1)]

    def recent_jobs(self, *, since_ms: int | None = None, start: int = 0, count: int = 100) -> list[str]:
        """Job ids from the index, newest first (``since_ms``: created at or after that epoch ms)."""
        low = "-inf" if since_ms is None else int(since_ms)
        return [_decode(m) for m in self.redis.zrevrangebyscore(self.keys.jobs, "+inf", low, start=start, num=count)]

    def server_ms(self) -> int:
        """The Redis server's clock in epoch ms (the clock every transition uses)."""
        sec, usec = self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    # -- transitions -----------------------------------------------------------------------
    def accept(self, job_id: str, *, model: str, input: dict, timeout: float, waiter_id: str,
               waiter: dict, first_claim_ms: int, retry_failed: bool = False, tenant: str = "default",
               priority: int = 0) -> tuple[str, bool, bool]:
        """Create the job if new and attach a waiter.  Returns (state, created, waiter_added).

        State ``conflict``: the job id exists with another model or input (nothing changed).  With
        ``retry_failed``, a failed, timed-out or cancelled job is re-run (its next generation).  A new
        job keeps ``tenant`` and ``priority``; a second call with the same id keeps the first's."""
        k = self.keys
        state, created, added = self._durable(
            "accept", "accept",
            keys=[k.job(job_id), k.waiters(job_id), k.due_submit, k.jobs, k.timeline(job_id), k.due_check,
                  k.due_resume],
            args=[job_id, model, canonical_input(input), timeout, waiter_id, _compact(waiter),
                  first_claim_ms, int(bool(retry_failed)), RESUME_LEASE_MS, tenant, int(priority)])
        return _decode(state), bool(created), bool(added)

    def reject(self, job_id: str, *, model: str, error: str) -> bool:
        k = self.keys
        return bool(self._run("reject", keys=[k.job(job_id), k.jobs, k.timeline(job_id)],
                              args=[job_id, model, error, self.retention_ms]))

    def claim_submit(self, job_id: str, *, lease_ms: int, unknown_grace_ms: int) -> tuple[str, int, str]:
        """Claim the job for a createTask attempt.  Returns (verdict, wait_ms, claim_token)."""
        token = uuid.uuid4().hex
        verdict, wait = self._run("claim_submit", keys=[self.keys.job(job_id), self.keys.due_submit,
                                                        self.keys.timeline(job_id)],
                                  args=[job_id, lease_ms, token, unknown_grace_ms])
        return _decode(verdict), int(wait), token

    def mark_sending(self, job_id: str, token: str, *, send_lease_ms: int) -> int:
        """Record that a create is about to go out and extend the claim over the request by
        ``send_lease_ms``; returns the attempt number (0 = claim lost)."""
        return int(self._run("mark_sending", keys=[self.keys.job(job_id), self.keys.due_submit,
                                                   self.keys.timeline(job_id)],
                             args=[token, job_id, send_lease_ms]))

    def defer(self, job_id: str, token: str, *, delay_ms: int, reason: str, error: str = "",
              count_error: bool = False, outcome_unknown: bool = False) -> bool:
        """Give back a claim and wait ``delay_ms`` in the submit queue."""
        return bool(self._run(
            "defer", keys=[self.keys.job(job_id), self.keys.due_submit, self.keys.timeline(job_id)],
            args=[job_id, token, max(0, int(delay_ms)), reason, error, int(count_error), int(outcome_unknown)]))

    def record_task(self, job_id: str, task_id: str, *, first_check_ms: int, timeout_ms: int,
                    source: str) -> str:
        k = self.keys
        return _decode(self._durable(
            "task recorded", "record_task",
            keys=[k.job(job_id), k.due_submit, k.due_check, k.task(task_id), k.timeline(job_id)],
            args=[job_id, task_id, first_check_ms, timeout_ms, source, self.retention_ms]))

    def finish(self, job_id: str, state: str, outcome: dict, *, error: str = "", credits=None) -> bool:
        """Move to a terminal state; True for the one call that did it.  ``credits`` (what the job
        consumed, when known) is kept on the record as ``credits``."""
        if state not in TERMINAL:
            raise ValueError(f"finish: state must be one of {sorted(TERMINAL)}, got {state!r}")
        k = self.keys
        tasks = (_decode(self.redis.hget(k.job(job_id), "task_ids")) or "").split()
        return self._durable(
            "finish", "finish",
            keys=[k.job(job_id), k.due_submit, k.due_check, k.timeline(job_id), k.due_resume,
                  *(k.task(t) for t in tasks)],
            args=[job_id, state, json.dumps(outcome), error, self.retention_ms, RESUME_LEASE_MS,
                  "" if credits is None else repr(float(credits))]) == 1

    def record_callback(self, job_id: str, outcome: dict) -> tuple[str, int]:
        """Store a delivered callback's outcome (ignored once the job is terminal). Returns (state, deliveries)."""
        summary = f"{outcome.get('state')} {outcome.get('task_id') or outcome.get('taskId') or ''}".strip()
        state, n = self._run("record_callback", keys=[self.keys.job(job_id), self.keys.timeline(job_id)],
                             args=[json.dumps(outcome), summary])
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
        """Take the job out of ``due:resume`` if every waiter is marked done (or the job is not finished)."""
        k = self.keys
        return self._run("resume_settled", keys=[k.waiters(job_id), k.waiters_done(job_id), k.due_resume,
                                                 k.job(job_id)], args=[job_id]) == 1

    def trim_index(self, *, batch: int = TRIM_BATCH, budget_s: float = TRIM_BUDGET_S) -> int:
        """Drop from the jobs index the entries older than the retention whose record is gone; how many.
        Batch after batch of ``batch`` entries, oldest first, until every entry older than the retention
        has been looked at or ``budget_s`` has passed (at least one batch): the index keeps up with any
        rate of jobs, and a backlog larger than the budget is taken up again by the next call.  The entries
        of jobs still there (live, or re-run) are kept and passed over by the later batches."""
        removed = kept = 0
        deadline = time.monotonic() + budget_s
        while True:
            gone, seen = (int(n) for n in self._run("trim_index", keys=[self.keys.jobs],
                                                    args=[self.retention_ms, self.keys.job(""), batch, kept]))
            removed += gone
            kept += seen - gone
            if seen < batch or time.monotonic() >= deadline:
                return removed

    def claim_due(self, which: str, *, horizon_ms: int, lease_ms: int, limit: int = 500) -> list[tuple[str, int]]:
        """Take due members of ``due:submit``, ``due:check`` or ``due:resume``: [(job_id, due_in_ms)]."""
        key = {"submit": self.keys.due_submit, "check": self.keys.due_check, "resume": self.keys.due_resume}[which]
        flat = self._run("claim_due", keys=[key], args=[horizon_ms, lease_ms, limit])
        return [(_decode(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def wake_submits(self) -> int:
        """Make every job waiting for submission due now (after a pause was lifted)."""
        return int(self._run("wake", keys=[self.keys.due_submit], args=[]))

    def reschedule_check(self, job_id: str, delay_ms: int, *, event: str = "", detail: str = "") -> bool:
        """Check a submitted job again in ``delay_ms``; ``event`` (with ``detail``) goes on its timeline."""
        return bool(self._run("reschedule", keys=[self.keys.due_check, self.keys.job(job_id), self.keys.timeline(job_id)],
                              args=[job_id, max(0, int(delay_ms)), JobState.SUBMITTED.value, event, detail]))

    def cancel(self, job_id: str, *, reason: str = "cancelled by an operator") -> tuple[bool, str, str | None, bool]:
        """Cancel an unfinished job.  Returns (done, state, task_id, was_sent): ``done`` is True for the call
        that cancelled it; otherwise ``state`` is the terminal state it already had, or ``missing``."""
        k = self.keys
        verdict, task_id, sent, state = self._run(
            "cancel", keys=[k.job(job_id), k.due_submit, k.due_check, k.timeline(job_id), k.due_resume],
            args=[job_id, reason, self.retention_ms, RESUME_LEASE_MS])
        verdict = _decode(verdict)
        return verdict == "cancelled", (_decode(state) or verdict), _decode(task_id) or None, bool(sent)

    def rerun(self, job_id: str, *, generation: int, reason: str, detail: str = "",
              remove_waiters: list[str] = (), add_waiters: dict[str, dict] | None = None) -> tuple[int, str]:
        """Run a failed, timed-out or cancelled job of ``generation`` again (a new upstream task), swapping
        the waiters ``remove_waiters`` for ``add_waiters`` in the same step.  Returns (new generation,
        state); generation 0 when the job was not re-runnable or had moved on (nothing changed), with
        state ``changed`` when a waiter finished that ``remove_waiters`` does not name (look again)."""
        swap = json.dumps({"remove": list(remove_waiters),
                           "add": {w: json.dumps(p) for w, p in (add_waiters or {}).items()}})
        return self._restart(job_id, "finished", str(generation), reason, detail, "", swap)

    def regenerate(self, job_id: str, *, task_id: str, outcome: dict, detail: str) -> tuple[int, str]:
        """Start the next generation of a submitted job whose task ``task_id`` failed transiently (before
        the job is finished; its waiters keep waiting).  Returns (new generation, state), 0 if it had moved on."""
        return self._restart(job_id, "failing", task_id, "regenerate", detail, json.dumps(outcome), "")

    def _restart(self, job_id, mode, expected, reason, detail, outcome_json, swap) -> tuple[int, str]:
        k = self.keys
        gen, state = self._run("restart", keys=[k.job(job_id), k.due_submit, k.due_check, k.timeline(job_id),
                                                k.waiters(job_id), k.waiters_done(job_id)],
                               args=[job_id, mode, expected, reason, detail, outcome_json, swap])
        return int(gen), _decode(state)

    def record_files(self, job_id: str, files: list[dict]) -> bool:
        """Keep the stored files of a succeeded job on its record (``kie.download`` calls this)."""
        key = self.keys.job(job_id)
        if not self.redis.exists(key):
            return False
        self.redis.hset(key, "files", json.dumps(files))
        return True

    # -- metrics ---------------------------------------------------------------------------
    def incr(self, event: str, amount: float = 1) -> None:
        """Count an event of a job's life (``worker.store.metrics.EVENTS`` says which metrics it moves)."""
        self.metrics.count(event, amount)
