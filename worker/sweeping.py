"""The periodic sweep: hands due status checks (and, as a fallback, due submissions) to live workers.

Beat sends ``kie.sweep`` every ``KIE_SWEEP_INTERVAL`` (1 s).  The sweep takes due members of the
job store's two due queues (a lease each, so a sweep that dies hands nothing out twice and loses
nothing) and sends one ``kie.check`` or ``kie.submit`` per job.  Submissions are normally handed
out sooner by every worker's due-queue pump (``worker.pump``).  Every 30 s it also returns the
in-flight slots of jobs that are finished or gone, and lifts a 402 pause once credits are back.
"""

from __future__ import annotations

import logging

from .pump import pump

log = logging.getLogger("kie_queue.sweep")

# A dispatched check is handed out again if it has not been taken this long after it was due (its
# message was lost with a worker, or sits behind a backlog: a second dispatch is harmless, checks
# are idempotent).
DISPATCH_LEASE_MS = 5_000
RECLAIM_EVERY_S = 30.0


def sweep(rt, submit_task, check_task) -> dict:
    s, store = rt.settings, rt.store
    submits = pump(rt, submit_task)
    checks = store.claim_due("check", horizon_ms=0, lease_ms=DISPATCH_LEASE_MS)
    for job_id, _ in checks:
        check_task.apply_async((job_id,), queue=s.queue)
    reclaimed = 0
    if rt.redis.set(store.keys.prefix + ":sweep:reclaim", "1", nx=True, ex=int(RECLAIM_EVERY_S)):
        reclaimed = reclaim_slots(rt)
        _maybe_lift_credit_pause(rt)
    return {"submits": submits, "checks": len(checks), "reclaimed": reclaimed}


def reclaim_slots(rt) -> int:
    """Free the in-flight slots of jobs that are terminal or no longer exist."""
    freed = 0
    for job_id in rt.limiter.in_flight_jobs():
        job = rt.store.get(job_id)
        if job is None or job["state"] in ("succeeded", "failed", "timed_out", "rejected", "accepted"):
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
