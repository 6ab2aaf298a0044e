"""The due-queue pump: every worker hands out submissions the moment they are due.

A Celery worker bootstep (``DuePump``) runs :func:`pump` on the worker's own timer every
``KIE_PUMP_INTERVAL`` seconds (default 0.05) in the worker's main process.  It claims the
submissions that are due now from the job store (a lease each, so two workers never hand out the
same job twice in a row, and a job whose message was lost with a dead worker is handed out again
when the lease ends) and sends one ``kie.submit`` per job, with no countdown.  Nothing waits inside
a worker or as a broker countdown: a job waiting for its rate-limit slot is picked up by whichever
worker is alive, within one pump interval of its slot.  Beat's sweep does the same once a second
as a fallback (a worker started without this step, or every worker busy).
"""

from __future__ import annotations

import logging

from celery import bootsteps

log = logging.getLogger("kie_queue.pump")

# a handed-out submission that no worker has taken this long after it was due is handed out again
SUBMIT_LEASE_MS = 1_000


def pump(rt, submit_task) -> int:
    """Send ``kie.submit`` for every submission due now.  Returns how many were sent."""
    due = rt.store.claim_due("submit", horizon_ms=0, lease_ms=SUBMIT_LEASE_MS)
    for job_id, _ in due:
        submit_task.apply_async((job_id,), queue=rt.settings.queue)
    return len(due)


class DuePump(bootsteps.StartStopStep):
    """Runs :func:`pump` on the worker's timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        from .runtime import runtime
        from .tasks import submit

        def tick():
            try:
                pump(runtime(), submit)
            except Exception as exc:  # noqa: BLE001 - a failed tick is retried on the next one
                log.warning("due-queue pump failed: %s", exc)

        interval = runtime().settings.pump_interval
        self.tref = worker.timer.call_repeatedly(interval, tick, priority=10)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
