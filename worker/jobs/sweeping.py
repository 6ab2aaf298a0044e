"""The periodic sweep: hands due status checks (and, as a fallback, due submissions) to live workers.

Beat sends ``kie.sweep`` every ``KIE_SWEEP_INTERVAL`` (1 s).  The sweep takes due members of the
job store's two due queues (``worker.jobs.dispatch``: a lease each, so a sweep that dies hands
nothing out twice and loses nothing) and sends one ``kie.check`` or ``kie.submit`` per job.
Submissions are normally handed out sooner by every worker's due-queue pump.  Every 30 s it also
returns the in-flight slots of jobs that are finished or gone, and lifts a 402 pause once credits
are back.
"""

from __future__ import annotations

import logging

from ..store.states import HOLDS_NO_SLOT
from .dispatch import hand_out

log = logging.getLogger("kie_queue.sweep")

RECLAIM_EVERY_S = 30.0


def sweep(rt, app) -> dict:
    """One sweep; returns what it did (counts), for logs and tests."""
    submits = hand_out(rt, app, "submit")
    checks = hand_out(rt, app, "check")
    reclaimed = 0
    if rt.redis.set(rt.store.keys.sweep_reclaim, "1", nx=True, ex=int(RECLAIM_EVERY_S)):
        reclaimed = reclaim_slots(rt)
        _maybe_lift_credit_pause(rt)
    if submits or checks:
        log.info("sweep handed out %d submissions and %d status checks", submits, checks)
    return {"submits": submits, "checks": checks, "reclaimed": reclaimed}


def reclaim_slots(rt) -> int:
    """Free the in-flight slots of jobs that cannot hold one (finished, waiting, or gone)."""
    freed = 0
    for job_id in rt.limiter.in_flight_jobs():
        job = rt.store.get(job_id)
        if job is None or job["state"] in HOLDS_NO_SLOT:
            rt.limiter.release(job_id)
            freed += 1
    if freed:
        rt.store.incr("slots_reclaimed", freed)
        log.info("reclaimed %d in-flight slots", freed)
    return freed


def _maybe_lift_credit_pause(rt) -> None:
    if rt.limiter.paused_for() <= 0:
        return
    try:
        credits = rt.client.credits()
    except Exception as exc:  # noqa: BLE001 - a failed check just keeps the pause
        log.info("credit check failed (%s); submissions stay paused", exc)
        return
    if credits > 0:
        rt.limiter.resume()
        rt.store.wake_submits()
        log.info("credits are back (%.2f): submissions resume", credits)
