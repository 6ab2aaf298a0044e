"""The due-queue pump: a Celery worker bootstep that hands out submissions the moment they are due.

``DuePump`` runs :func:`worker.jobs.dispatch.pump_submissions` on the worker's own timer every
``KIE_PUMP_INTERVAL`` seconds (default 0.05) in the worker's main process.  Nothing waits inside a
worker or as a broker countdown: a job waiting for its rate-limit slot is picked up by whichever
worker is alive, within one pump interval of its slot.  Beat's sweep does the same once a second
as a fallback (a worker started without this step, or every worker busy).
"""

from __future__ import annotations

import logging

from celery import bootsteps

from .jobs.dispatch import pump_submissions
from .runtime import runtime

log = logging.getLogger("kie_queue.pump")


class DuePump(bootsteps.StartStopStep):
    """Runs the due-queue pump on the worker's timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        app = worker.app

        def tick():
            try:
                pump_submissions(runtime(), app)
            except Exception as exc:  # noqa: BLE001 - a failed tick is retried on the next one
                log.warning("due-queue pump failed: %s", exc)

        self.tref = worker.timer.call_repeatedly(runtime().settings.pump_interval, tick, priority=10)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
