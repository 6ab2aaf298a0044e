"""Waiting for enqueued jobs: their outcomes, progress for a display, and a guard against waiting for nobody.

:class:`Waiter` polls the result backend and the job store (every half second) until every job
is finished or the deadline passes; ``on_tick`` is called after each poll so a display can
refresh.  When a job has sat unclaimed (no job record yet) for ``NO_CONSUMER_AFTER_S`` seconds,
it asks whether any worker consumes the queue and warns once if none does.

Without ``--wait-timeout`` a wait gives up after :func:`default_timeout`: the job's own timeout
(counted from its submission) plus the time the rate limit needs to submit the whole batch plus a
margin for the sweep to report a timeout, so the worker's own ``GenerationTimeout`` arrives first.
"""

from __future__ import annotations

import dataclasses
import time

NO_CONSUMER_AFTER_S = 3.0
MARGIN_S = 30.0
POLL_S = 0.5


def default_timeout(settings, jobs: int, job_timeout: float | None) -> float:
    """Seconds a wait for ``jobs`` jobs may take before the command gives up."""
    rate = settings.rate_limit
    submit_all = jobs * rate.window / rate.limit
    return float(job_timeout or settings.job_timeout) + submit_all + MARGIN_S


@dataclasses.dataclass
class Outcome:
    sent: object                     # enqueue.Sent
    state: str = "queued"            # the job's state; "succeeded" / "failed" once the chain is ready
    done: bool = False               # the chain's last step is ready
    result: dict | None = None
    error: str | None = None
    error_type: str | None = None

    def as_dict(self) -> dict:
        d = {"job_id": self.sent.job_id, "celery_task_id": self.sent.celery_task_id, "state": self.state}
        if self.sent.line is not None:
            d["line"] = self.sent.line
        if self.result is not None:
            d["result"] = self.result
        if self.error is not None:
            d["error"] = {"type": self.error_type, "message": self.error}
        return d


class Waiter:
    def __init__(self, sent: list, *, store, app, queue: str, timeout: float, warn):
        self.outcomes = [Outcome(s) for s in sent]
        self.store, self.app, self.queue, self.timeout, self.warn = store, app, queue, timeout, warn
        self.started = time.monotonic()
        self.warned_no_consumer = False

    def counts(self) -> dict[str, int]:
        c = {"succeeded": 0, "failed": 0, "waiting": 0}
        for o in self.outcomes:
            c[o.state if o.done else "waiting"] += 1
        return c

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def run(self, on_tick=lambda: None) -> bool:
        """Poll until all are done (True) or the deadline passes (False)."""
        while True:
            self.poll()
            on_tick()
            if all(o.done for o in self.outcomes):
                return True
            if self.elapsed >= self.timeout:
                return False
            self._check_consumers()
            time.sleep(POLL_S)

    def poll(self) -> None:
        from ..errors import KieQueueError

        for o in self.outcomes:
            if o.done:
                continue
            res = o.sent.result
            if res.ready():
                o.done = True
                if res.successful():
                    o.state, o.result = "succeeded", res.result
                else:
                    exc = res.result
                    o.state, o.error_type = "failed", type(exc).__name__
                    o.error = exc.message if isinstance(exc, KieQueueError) else str(exc)
                continue
            job = self.store.get(o.sent.job_id)
            o.state = job["state"] if job else "queued"   # may read "succeeded" while download runs

    def _check_consumers(self) -> None:
        if self.warned_no_consumer or self.elapsed < NO_CONSUMER_AFTER_S:
            return
        if not any(o.state == "queued" for o in self.outcomes):
            return
        from .consumers import queue_consumers

        if not queue_consumers(self.app, self.queue):
            self.warn(f"no worker is consuming queue {self.queue!r}: the jobs stay queued until one starts "
                      f"(celery -A worker worker, with KIE_QUEUE={self.queue})")
        self.warned_no_consumer = True
