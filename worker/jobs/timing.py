"""How long things wait: leases, polling intervals, backoff and jitter (seconds unless named ``_ms``)."""

from __future__ import annotations

import random

CLAIM_LEASE_MS = 2_000
"""A submit claim first covers the few Redis steps before the POST (a worker that dies there delays
the job by at most this); :func:`send_lease_ms` then extends it over the request itself."""

SUBMIT_LEASE_MS = 1_000
"""A handed-out submission that no worker has taken this long after it was due is handed out again."""

CHECK_LEASE_MS = 5_000
"""A handed-out status check not taken this long after it was due is handed out again (its message
was lost with a worker, or sits behind a backlog; checks are idempotent)."""

RETRY_CHECK_S = 5.0
"""After a failed status check (or an unconfirmable callback), the next check comes this much later."""

COOLDOWN_DEFAULT_S = 1.0
"""Shared pause after a 429 that carried no ``Retry-After``."""

CREDIT_PAUSE_S = 300.0
"""Shared pause of submissions after a 402 (lifted sooner by the sweep's credit check or ``kie-queue resume``)."""


def send_lease_ms(s) -> int:
    """How long a claim lasts once the create is going out: longer than one request can take."""
    return int((s.http_timeout + 5) * 1000)


def poll_delay(age: float) -> float:
    """kie.ai's suggested polling interval for a task ``age`` seconds old."""
    if age < 30:
        return 2.5
    if age < 120:
        return 7.5
    return 20.0


def first_check_delay(s) -> float:
    """Seconds from submission to the first status check: the callback's grace, or the first poll."""
    return s.callback_grace if s.callback_url else poll_delay(0.0)


def jittered(wait: float, spread: float) -> float:
    """``wait`` plus a random 0..spread seconds, so waiting workers do not return together."""
    return wait + random.uniform(0, spread)


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
    return random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))
