"""Finishing a job exactly once, and finishing each of its waiters' chains exactly once.

A job reaches a terminal state in one atomic store step (:meth:`JobStore.finish`); whoever gets
there first wins and the others change nothing.  Then every waiter (each ``kie.generate`` call for
the job) is claimed once (a set-add in Redis) and its parked chain resumed with the result dict or
failed with ``GenerationFailed`` / ``GenerationTimeout`` / ``GenerationCancelled``.  Finishing waiters is safe to repeat: a
claimed waiter is skipped, so a job finished by one worker and re-checked by another resumes
nothing twice.  (A worker killed between a waiter's claim and the dispatch of its next step loses
that dispatch: at-most-once resumption was preferred over running the user's chain twice.)

Every function takes the per-process runtime ``rt`` and the Celery ``app`` whose backend and broker
the parked chains use.
"""

from __future__ import annotations

import json
import logging

from .. import failpoints
from ..errors import GenerationCancelled, GenerationFailed, GenerationTimeout
from ..store.states import FINISHED, JobState
from .. import tracing
from . import credit_guard, parking

log = logging.getLogger("kie_queue.completion")


def result_dict(job: dict, outcome) -> dict:
    """The public result of a successful job: what the next task of the chain receives."""
    created = int(job.get("created_at") or 0)
    submitted = int(job.get("submitted_at") or 0)
    return {
        "job_id": job["job_id"],
        "task_id": outcome.task_id,
        "model": outcome.model or job.get("model"),
        "state": "success",
        "result_urls": list(outcome.result_urls),
        "credits": outcome.credits,
        "remained_credits": outcome.remained_credits,
        "cost_time": outcome.cost_time,
        "created_at": created / 1000.0,
        "submitted_at": submitted / 1000.0 if submitted else None,
        "upstream_create_time": outcome.create_time,
        "upstream_complete_time": outcome.complete_time,
        "attempts": int(job.get("attempts") or 0),
    }


def succeed(rt, app, job_id: str, outcome) -> bool:
    """Record a successful outcome (once) and resume the waiters.  True if this call finished the job."""
    job = rt.store.get(job_id)
    if job is None:
        return False
    failpoints.hit("complete.before_finish")
    won = rt.store.finish(job_id, JobState.SUCCEEDED, result_dict(job, outcome), credits=outcome.credits)
    if won:
        rt.store.metrics.credits(outcome.credits, outcome.remained_credits)
    _after_finish(rt, app, job_id, won, JobState.SUCCEEDED, job)
    if won:
        credit_guard.observe(rt, rt.account_of(job), outcome.remained_credits)
    return won


def fail(rt, app, job_id: str, *, fail_code, fail_msg: str, task_id: str | None = None,
         state: str = JobState.FAILED) -> bool:
    """Record a failure (once) and fail the waiters' chains."""
    outcome = {"error": "GenerationFailed", "fail_code": None if fail_code is None else str(fail_code),
               "fail_msg": fail_msg, "task_id": task_id}
    failpoints.hit("complete.before_finish")
    won = rt.store.finish(job_id, state, outcome, error=f"[{fail_code}] {fail_msg}")
    _after_finish(rt, app, job_id, won, state)
    return won


def time_out(rt, app, job_id: str) -> bool:
    job = rt.store.get(job_id) or {}
    outcome = {"error": "GenerationTimeout", "timeout": float(job.get("timeout") or 0),
               "task_id": job.get("task_id")}
    failpoints.hit("complete.before_finish")
    won = rt.store.finish(job_id, JobState.TIMED_OUT, outcome, error="no outcome before the deadline")
    _after_finish(rt, app, job_id, won, JobState.TIMED_OUT)
    return won


def _after_finish(rt, app, job_id: str, won: bool, state: str, job: dict | None = None) -> None:
    failpoints.hit("complete.after_finish")
    rt.account_of(job or rt.store.get(job_id)).limiter.release(job_id)
    if won:
        rt.store.incr(f"jobs_{state}")
        rt.store.metrics.since("kie_submission_to_outcome_seconds", (rt.store.get(job_id) or {}).get("submitted_at"),
                               state)
        log.info("job %s %s", job_id, state)
    finish_waiters(rt, app, job_id)


def error_for_job(job: dict) -> Exception:
    """The exception a failed or timed-out job raises in its callers."""
    outcome = json.loads(job.get("outcome") or "{}")
    if job["state"] == JobState.TIMED_OUT:
        return GenerationTimeout(job["job_id"], outcome.get("timeout"), outcome.get("task_id"))
    if job["state"] == JobState.CANCELLED:
        return GenerationCancelled(job["job_id"], outcome.get("task_id") or None, bool(outcome.get("submitted")),
                                   outcome.get("reason"))
    return GenerationFailed(outcome.get("fail_code"), outcome.get("fail_msg"), job["job_id"], outcome.get("task_id"))


def finish_waiters(rt, app, job_id: str) -> int:
    """Resume or fail every waiter not yet finished.  Returns how many this call finished."""
    job = rt.store.get(job_id)
    if job is None or job["state"] not in FINISHED:
        return 0
    store, succeeded, done = rt.store, job["state"] == JobState.SUCCEEDED, 0
    for waiter_id, parked in store.waiters(job_id).items():
        lease = store.claim_waiter(job_id, waiter_id)
        if lease is None:
            continue
        token, taken_over = lease
        if taken_over:
            store.incr("continuations_redispatched")
            log.warning("job %s: waiter %s was claimed by a process that did not finish it; continuing it "
                        "(its next step may already have been sent once)", job_id, waiter_id)
        failpoints.hit("complete.after_waiter_claim")
        with tracing.resumed(parked, job_id=job_id, waited_since_ms=job.get("submitted_at")):
            if succeeded:
                parking.resume(app, parked, json.loads(job["outcome"]), again=taken_over)
            else:
                parking.fail(app, parked, error_for_job(job))
        failpoints.hit("complete.after_publish")
        if not store.mark_waiter_done(job_id, waiter_id, token, drop_parked=succeeded):
            store.incr("continuations_lease_lost")
            log.warning("job %s: waiter %s's lease was taken over before it was marked done", job_id, waiter_id)
        failpoints.hit("complete.after_mark_done")
        store.metrics.since("kie_callback_to_dispatch_seconds", job.get("callback_at"))
        done += 1
    store.resume_settled(job_id)
    return done


def repair_waiter(rt, app, job_id: str, parked: dict) -> None:
    """Store the final state again for a waiter already finished (a redelivered ``kie.generate`` may have
    written SUBMITTED over it); runs nothing."""
    job = rt.store.get(job_id)
    if job is None or job["state"] not in FINISHED:
        return
    if parked["id"] not in rt.store.waiters(job_id):
        return   # its chain was re-run under new ids (an operator's retry): the original keeps its outcome
    if job["state"] == JobState.SUCCEEDED:
        parking.store_result(app, parked, json.loads(job["outcome"]))
    else:
        parking.store_failure(app, parked, error_for_job(job))
