"""Learning a submitted job's outcome: from a recorded callback, or by polling ``recordInfo``.

:func:`check` is the polling path (the sweep sends it when a job's next check is due): it asks
``recordInfo``, completes the job if the task is terminal, times it out past its deadline, or
schedules the next poll at kie.ai's suggested interval.

:func:`from_callback` is the webhook's path.  kie.ai's signature covers only ``taskId.timestamp``,
never the body, so by default (``KIE_VERIFY_CALLBACKS``) a callback only tells us *when* to look:
the outcome that completes the job comes from ``recordInfo``.  A callback for a job whose create is
still in flight or had an unknown outcome adopts the callback's taskId once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

from ..errors import KieQueueError, NotFound
from ..kie.schemas import Outcome
from ..logs import bind as bind_log
from ..store.records import ADOPTABLE, FOREIGN, task_relation
from ..store.states import FINISHED, TERMINAL, JobState
from ..tokens import callback_path
from . import completion, regeneration
from .timing import RETRY_CHECK_S, first_check_delay, poll_delay

log = logging.getLogger("kie_queue.checking")


def check(rt, app, job_id: str) -> str:
    """Poll one submitted job.  Returns what happened."""
    store = rt.store
    job = store.get(job_id)
    if job is None:
        store.resume_settled(job_id)   # an expired job: nothing left to resume
        return "missing"
    if job["state"] in FINISHED:
        completion.finish_waiters(rt, app, job_id)
        return job["state"]
    if job["state"] != JobState.SUBMITTED:
        return job["state"]
    bind_log(upstream_task_id=job.get("task_id"))
    now = time.time()
    deadline = int(job["deadline"]) / 1000.0
    try:
        outcome = rt.account_of(job).client.record_info(job["task_id"])
    except KieQueueError as exc:
        if now >= deadline:
            completion.time_out(rt, app, job_id)
            return "timed_out"
        store.incr("poll_errors")
        log.info("job %s: status check failed (%s); again in %.0f s", job_id, exc, RETRY_CHECK_S)
        store.reschedule_check(job_id, int(min(RETRY_CHECK_S, max(0.0, deadline - now)) * 1000),
                               event="poll_failed", detail=exc.message)
        return "error"
    store.incr("polls")
    if outcome.terminal:
        return _complete(rt, app, job_id, outcome)
    if now >= deadline:
        completion.time_out(rt, app, job_id)
        return "timed_out"
    age = now - int(job["submitted_at"]) / 1000.0
    store.reschedule_check(job_id, int(min(poll_delay(age), max(0.0, deadline - now)) * 1000 + 1),
                           event="poll", detail=f"task {outcome.task_id} {outcome.state}")
    return "pending"


def from_callback(rt, app, job_id: str) -> str:
    """Act on the callback recorded for ``job_id`` (sent by the webhook as ``kie.complete``)."""
    s, store = rt.settings, rt.store
    job = store.get(job_id)
    if job is None:
        return "missing"
    if job["state"] in TERMINAL:
        completion.finish_waiters(rt, app, job_id)
        return job["state"]
    raw = job.get("callback")
    if not raw:
        return "no-callback"
    reported = Outcome.from_dict(json.loads(raw))
    bind_log(upstream_task_id=reported.task_id)
    relation = task_relation(job, reported.task_id)
    if relation == FOREIGN:
        store.incr("check_task_mismatch")
        log.warning("job %s: callback names task %s, not one of the job's tasks; ignored", job_id, reported.task_id)
        return "mismatch"
    adopting = relation == ADOPTABLE
    if s.verify_callbacks:
        try:
            outcome = rt.account_of(job).client.record_info(reported.task_id)
        except NotFound:
            store.incr("check_unknown_task")
            log.warning("job %s: callback names task %s, which kie.ai does not know; ignored", job_id,
                        reported.task_id)
            return "unknown-task"
        except KieQueueError as exc:
            if adopting:
                return "retry"          # the task cannot be adopted unconfirmed: the caller retries
            log.info("job %s: could not confirm callback (%s); the sweep will poll", job_id, exc)
            store.reschedule_check(job_id, int(RETRY_CHECK_S * 1000), event="callback_unconfirmed",
                                   detail=exc.message)
            return "unconfirmed"
        if adopting and not created_for(outcome, job_id):
            store.incr("check_foreign_task")
            log.warning("job %s: callback names task %s, which was not created for this job; ignored", job_id,
                        reported.task_id)
            return "foreign-task"
        if outcome.credits is None and reported.task_id == outcome.task_id:
            # recordInfo carries no credit figures; the callback's are informational, keep them
            outcome = dataclasses.replace(outcome, credits=reported.credits,
                                          remained_credits=reported.remained_credits)
        if outcome.terminal and outcome.state != reported.state:
            store.incr("check_contradicted")
            log.warning("job %s: callback said %s but recordInfo says %s; trusting recordInfo",
                        job_id, reported.state, outcome.state)
    else:
        outcome = reported
    if adopting:
        # The create is still in flight, or its outcome was unknown: this (confirmed) callback reveals the task.
        recorded = store.record_task(job_id, reported.task_id, first_check_ms=int(first_check_delay(s) * 1000),
                                     timeout_ms=int(float(job["timeout"]) * 1000), source="callback")
        if recorded == "duplicate":
            store.incr("duplicate_tasks")
        store.incr("tasks_adopted_from_callback")
    if not outcome.terminal:
        store.reschedule_check(job_id, int(poll_delay(0) * 1000))
        return "pending"
    return _complete(rt, app, job_id, outcome)


def created_for(outcome, job_id: str) -> bool:
    """Whether kie.ai's record of a task shows it was created for ``job_id`` (its ``callBackUrl`` names
    the job).  A record without the request parameters cannot tell, and is taken as yes."""
    param = outcome.param if isinstance(outcome.param, dict) else None
    url = param.get("callBackUrl") if param else None
    if not isinstance(url, str):
        return True
    return (callback_path(job_id) + "?") in url


def _complete(rt, app, job_id: str, outcome) -> str:
    if outcome.succeeded:
        completion.succeed(rt, app, job_id, outcome)
        return "succeeded"
    if regeneration.maybe_regenerate(rt, app, job_id, outcome):
        return "regenerating"
    completion.fail(rt, app, job_id, fail_code=outcome.fail_code, fail_msg=outcome.fail_msg or "generation failed",
                    task_id=outcome.task_id)
    return "failed"
