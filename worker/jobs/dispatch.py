"""Handing due work to the workers: one ``kie.submit`` or ``kie.check`` message per due job.

The job store keeps three due queues (sorted sets by due time).  :func:`hand_out` takes the members
due now under a lease each (so two dispatchers never send the same job twice in a row, and a job
whose message was lost with a dead worker is handed out again when the lease ends) and sends one
task message per job by name, with no countdown.  Jobs waiting for a create wait in their tenant's
ready queue in the limiter; :func:`grant_all` asks each account's limiter which of them may go now
and makes those due.  Every worker's due-queue pump (``worker.bootsteps``) calls
:func:`pump_submissions` every ``KIE_PUMP_INTERVAL``; beat's sweep (``worker.jobs.sweeping``) calls
both once a second.
"""

from __future__ import annotations

from .. import task_names
from .timing import CHECK_LEASE_MS, SUBMIT_LEASE_MS

_QUEUES = {"submit": (task_names.SUBMIT, SUBMIT_LEASE_MS), "check": (task_names.CHECK, CHECK_LEASE_MS),
           # a finished job whose waiters were not all marked done: kie.check resumes them
           "resume": (task_names.CHECK, CHECK_LEASE_MS)}


def hand_out(rt, app, which: str) -> int:
    """Send the task for every job due now in the ``which`` (``submit`` | ``check`` | ``resume``) queue."""
    name, lease_ms = _QUEUES[which]
    due = rt.store.claim_due(which, horizon_ms=0, lease_ms=lease_ms)
    for job_id, _ in due:
        # ignore_result: nobody waits on it, so the sender subscribes to no result channel
        app.send_task(name, args=[job_id], queue=rt.settings.queue, ignore_result=True)
    return len(due)


def grant_all(rt) -> int:
    """Ask every account's limiter for the creates that may go out now (each granted job becomes due
    now in the submit queue); how many were granted."""
    return sum(len(account.limiter.grant()[0]) for account in rt.accounts.values())


def pump_submissions(rt, app) -> int:
    """Grant what may go now, then send ``kie.submit`` for every submission due now."""
    grant_all(rt)
    return hand_out(rt, app, "submit")
