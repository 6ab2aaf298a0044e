"""What an operator does to jobs: retry failed ones, cancel unfinished ones, resume submissions.

Each action changes the job store in one atomic step per job and then sends, by name, the task
that carries the job on (``kie.submit`` for a re-run, ``kie.check`` to fail a cancelled job's
chains inside a worker, where errbacks and chord joins must run).  Results are one dict per
reference: ``{"job_id", "outcome", ...}`` with outcome ``retried``, ``cancelled``, ``not_found``,
``not_retryable: <state>`` or ``not_cancellable: <state>``.

The re-run rule: a failed, timed-out or cancelled job may be run again under its job id (a new
upstream task, recorded as the job's next generation); a succeeded job never is.
"""

from __future__ import annotations

import logging

from .. import task_names
from ..jobs import parking
from ..store.states import RERUNNABLE
from .queries import resolve

log = logging.getLogger("kie_queue.ops")

_RETRY_LOOKS = 3
"""How often a retry looks at a job again when one of its chains failed while it was preparing the re-run."""


def retry(rt, producer, refs) -> list[dict]:
    """Run each failed job again (a new upstream task) and, when it succeeds, the post-processing that
    was parked behind it, under new task ids (the original ``AsyncResult`` objects stay failed).

    A success: ``{"job_id", "outcome": "retried", "generation": n, "runs": [{"replaces": old task id,
    "task_id": new kie.generate task id, "chain_task_ids": [new ids of the remaining steps, in order]}]}``.
    """
    return [_retry_one(rt, producer, ref) for ref in refs]


def _retry_one(rt, producer, ref: str) -> dict:
    store = rt.store
    job_id = resolve(rt, ref)
    for _ in range(_RETRY_LOOKS):
        job = store.get(job_id) if job_id else None
        if job is None:
            return {"job_id": ref, "outcome": "not_found"}
        if job["state"] not in RERUNNABLE:
            return {"job_id": job_id, "outcome": f"not_retryable: {job['state']}"}
        # the chains that already failed are run again under new ids; a waiter not yet failed simply
        # waits for the new outcome
        old = {w: p for w, p in store.waiters(job_id).items() if store.waiter_done(job_id, w)}
        new = {w: parking.rerun(p) for w, p in old.items()}
        generation, state = store.rerun(
            job_id, generation=int(job.get("generation") or 1), reason="retried",
            detail=f"an operator re-ran the {job['state']} job ({len(new)} parked chain(s) run again)",
            remove_waiters=list(old), add_waiters={p["id"]: p for p in new.values()})
        if generation:
            break
        if state != "changed":
            return {"job_id": job_id, "outcome": f"not_retryable: {state}"}
    else:
        return {"job_id": job_id, "outcome": "not_retryable: busy"}
    producer.send_task(task_names.SUBMIT, args=[job_id], queue=rt.settings.queue)
    store.incr("jobs_retried")
    log.info("job %s: re-run as generation %d by an operator", job_id, generation)
    return {"job_id": job_id, "outcome": "retried", "generation": generation,
            "runs": [{"replaces": w, "task_id": p["id"], "chain_task_ids": parking.chain_task_ids(p)}
                     for w, p in new.items()]}


def cancel(rt, producer, refs) -> list[dict]:
    """Cancel each unfinished job.  One not yet submitted never is; a submitted one is marked
    cancelled and its later outcome ignored (kie.ai has no cancel call: its credits may still be
    spent).  Either way its chains fail with ``GenerationCancelled`` and their errbacks run once.

    A success: ``{"job_id", "outcome": "cancelled", "submitted": bool, "task_id": str | None}``.
    """
    out = []
    for ref in refs:
        job_id = resolve(rt, ref)
        if job_id is None:
            out.append({"job_id": ref, "outcome": "not_found"})
            continue
        done, state, task_id, sent = rt.store.cancel(job_id)
        if not done:
            out.append({"job_id": job_id, "outcome": "not_found" if state == "missing" else f"not_cancellable: {state}"})
            continue
        rt.account_of(rt.store.get(job_id)).limiter.release(job_id)
        rt.store.incr("jobs_cancelled")
        # the chains are failed inside a worker (errbacks and chord joins run where the job completes)
        producer.send_task(task_names.CHECK, args=[job_id], queue=rt.settings.queue)
        log.info("job %s cancelled (%s)", job_id, "after submission" if sent else "before submission")
        out.append({"job_id": job_id, "outcome": "cancelled", "submitted": sent, "task_id": task_id})
    return out


def resume(rt) -> dict:
    """Lift a 402 (insufficient credits) or low-credit pause on every account's submissions and wake
    every job waiting in the submit queue: ``{"resumed": True, "woken": n}`` (jobs in the tenants'
    ready queues need no waking: the next grant serves them)."""
    for account in rt.accounts.values():
        account.limiter.resume()
    return {"resumed": True, "woken": rt.store.wake_submits()}
