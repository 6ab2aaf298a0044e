"""Redis key names, built in one place.

Every key starts with ``KIE_KEY_PREFIX`` so tests and tenants can share one Redis.
Keys that belong to an upstream account (rate limit, in-flight cap, cool-downs)
are namespaced by a hash of the API key, never by the key itself.
"""

from __future__ import annotations

import hashlib

TIMELINE_CAP = 200
"""Events kept per job (each transition appends one, in the same Lua step)."""


def account_id(api_key: str | None) -> str:
    """A short, non-reversible name for an API key (first 16 hex of its SHA-256)."""
    return hashlib.sha256((api_key or "").encode()).hexdigest()[:16]


class Keys:
    """Key names under one prefix.  ``Keys("kie").job("abc")`` → ``kie:job:abc``."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def job(self, job_id: str) -> str:
        """Hash: the job record (state, model, input, task ids, timestamps, outcome)."""
        return f"{self.prefix}:job:{job_id}"

    def waiters(self, job_id: str) -> str:
        """Hash: Celery task id → parked chain context (JSON) of every caller waiting on the job (a resumed
        caller's entry is deleted when marked done; a failed one's is kept until the retention)."""
        return f"{self.prefix}:job:{job_id}:waiters"

    def waiters_done(self, job_id: str) -> str:
        """Set: Celery task ids whose chain was resumed or failed and marked done (after the broker took the next step)."""
        return f"{self.prefix}:job:{job_id}:done"

    def waiter_leases(self, job_id: str) -> str:
        """Hash: Celery task id → ``token:deadline_ms`` of the lease on resuming that waiter's chain."""
        return f"{self.prefix}:job:{job_id}:leases"

    def timeline(self, job_id: str) -> str:
        """List: the job's events, oldest first, JSON ``{"t": epoch ms, "event", "detail"}``, capped at
        ``TIMELINE_CAP`` (the oldest are dropped)."""
        return f"{self.prefix}:job:{job_id}:timeline"

    @property
    def jobs(self) -> str:
        """Sorted set: job id → epoch ms of its creation (the index ``kie-queue jobs`` lists)."""
        return f"{self.prefix}:jobs"

    def task(self, task_id: str) -> str:
        """String: upstream taskId → job id."""
        return f"{self.prefix}:task:{task_id}"

    @property
    def due_submit(self) -> str:
        """Sorted set: job id → epoch ms when its (next) createTask attempt is due."""
        return f"{self.prefix}:due:submit"

    @property
    def due_check(self) -> str:
        """Sorted set: job id → epoch ms when its status should next be checked (poll or timeout)."""
        return f"{self.prefix}:due:check"

    @property
    def due_resume(self) -> str:
        """Sorted set: finished job id → epoch ms when the sweep should resume its waiters unless done by then."""
        return f"{self.prefix}:due:resume"

    @property
    def sweep_reclaim(self) -> str:
        """String with a TTL: held while one sweep's slot reclaim runs (at most one every 30 s)."""
        return f"{self.prefix}:sweep:reclaim"

    @property
    def metrics(self) -> str:
        """Hash: every metric's counters, gauges and histogram buckets (``worker.store.metrics``)."""
        return f"{self.prefix}:metrics"

    def rate_log(self, account: str) -> str:
        """Sorted set: the sliding-window log of createTask calls of one account."""
        return f"{self.prefix}:rl:{account}:log"

    def cooldown(self, account: str) -> str:
        """String with a TTL: creates paused after a 429."""
        return f"{self.prefix}:rl:{account}:cooldown"

    def paused(self, account: str) -> str:
        """String with a TTL: submissions paused after a 402 (insufficient credits)."""
        return f"{self.prefix}:rl:{account}:paused"

    def account_base(self, account: str) -> str:
        """The stem of every key of one account; the fair scheduler's keys hang off it (``lua/fair.lua``)."""
        return f"{self.prefix}:rl:{account}"

    def sched(self, account: str) -> str:
        """Hash: the fair scheduler's state (virtual time, sequences, each tenant's weight, cap, tags)."""
        return f"{self.prefix}:rl:{account}:sched"

    def ready_tenants(self, account: str) -> str:
        """Sorted set: ``<seq>:<tenant>`` → virtual start tag, for every tenant with a job ready to grant."""
        return f"{self.prefix}:rl:{account}:tenants"

    def blocked_tenants(self, account: str) -> str:
        """Sorted set: tenant → earliest in-flight lease expiry, for tenants with ready jobs at their cap."""
        return f"{self.prefix}:rl:{account}:blocked"

    def ready_queue(self, account: str, tenant: str) -> str:
        """Sorted set: job id → (9 − priority)·10¹³ + arrival sequence: one tenant's waiting jobs."""
        return f"{self.prefix}:rl:{account}:q:{tenant}"

    def tenant_inflight(self, account: str, tenant: str) -> str:
        """Sorted set: job id → lease expiry (epoch ms) of one tenant's in-flight slots."""
        return f"{self.prefix}:rl:{account}:tin:{tenant}"

    def inflight(self, account: str) -> str:
        """Sorted set: job id → lease expiry (epoch ms) of each in-flight slot."""
        return f"{self.prefix}:rl:{account}:inflight"
