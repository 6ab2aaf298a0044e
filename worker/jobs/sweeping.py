"""The periodic sweep: hands due status checks (and, as a fallback, due submissions) to live workers.

Beat sends ``kie.sweep`` every ``KIE_SWEEP_INTERVAL`` (1 s).  The sweep takes due members of the
job store's due queues (``worker.jobs.dispatch``: a lease each, so a sweep that dies hands
nothing out twice and loses nothing) and sends one ``kie.check`` or ``kie.submit`` per job.  A finished job whose waiters' leases ended
before they were marked done (``due:resume``: its finisher died) gets a ``kie.check``, which resumes
them again (``worker.jobs.completion``).
Submissions are normally handed out sooner by every worker's due-queue pump.  Every 30 s it also
returns the in-flight slots of jobs that are finished or gone, drops the jobs index entries of jobs
whose retention has passed (all of them, in batches of 500, for up to a second: ``JobStore.trim_index``),
and checks each account's credits (while it is paused, or always with
``KIE_MIN_CREDITS``): an account below the minimum pauses, one whose credits are back resumes.
"""

from __future__ import annotations

import logging

from ..store.states import HOLDS_NO_SLOT
from . import credit_guard
from .dispatch import grant_all, hand_out

log = logging.getLogger("kie_queue.sweep")

RECLAIM_EVERY_S = 30.0


def sweep(rt, app) -> dict:
    """One sweep; returns what it did (counts), for logs and tests."""
    grant_all(rt)
    submits = hand_out(rt, app, "submit")
    checks = hand_out(rt, app, "check")
    resumes = hand_out(rt, app, "resume")
    reclaimed = 0
    if rt.redis.set(rt.store.keys.sweep_reclaim, "1", nx=True, ex=int(RECLAIM_EVERY_S)):
        reclaimed = reclaim_slots(rt)
        rt.store.trim_index()
        for account in rt.accounts.values():
            credit_check(rt, account)
    if submits or checks:
        log.info("sweep handed out %d submissions and %d status checks", submits, checks)
    if resumes:
        log.info("sweep handed out %d resumptions of finished jobs", resumes)
    return {"submits": submits, "checks": checks, "resumes": resumes, "reclaimed": reclaimed}


def reclaim_slots(rt) -> int:
    """Free the in-flight slots of jobs that cannot hold one (finished, or gone; a waiting job holds
    one only from its grant until its create)."""
    freed = 0
    for account in rt.accounts.values():
        for job_id in account.limiter.in_flight_jobs():
            job = rt.store.get(job_id)
            if job is None or (job["state"] in HOLDS_NO_SLOT and not job.get("grant")):
                account.limiter.release(job_id)
                freed += 1
    if freed:
        rt.store.incr("slots_reclaimed", freed)
        log.info("reclaimed %d in-flight slots", freed)
    return freed


def credit_check(rt, account) -> float | None:
    """Check the account's balance (``GET /api/v1/chat/credit``) when it matters: while its
    submissions are paused, or always with ``KIE_MIN_CREDITS`` set.  Pauses the account below the
    minimum, resumes it (and wakes its waiting jobs) once the balance is back.  Returns the balance,
    or None when it was not checked or the check failed."""
    minimum = rt.settings.min_credits
    if account.limiter.paused_for() <= 0 and minimum is None:
        return None
    try:
        credits = float(account.client.credits())
    except Exception as exc:  # noqa: BLE001 - a failed check just keeps things as they are
        log.info("credit check of account %s failed (%s)", account.id, exc)
        return None
    credit_guard.observe(rt, account, credits)
    return credits


