"""The Celery tasks, by their stable names (``worker.task_names``): thin entry points.

Public (other services ``send_task`` these by name):

* ``kie.generate(input, model="google/nano-banana", job_id=None, timeout=None, retry_failed=False,
  tenant=None, priority=0)``
* ``kie.download(result)``

Internal (sent by the project itself): ``kie.submit`` (a due createTask attempt), ``kie.check``
(a due status poll), ``kie.complete`` (a callback was recorded), ``kie.sweep`` (beat, every second:
hands due jobs to workers).  Each is safe to run twice.  Nobody waits on the internal tasks, so they
store no result (``ignore_result``: no result key kept for a week per message, no result
subscription by whoever sends them).  The logic lives in ``worker.jobs`` and
``worker.results``; each task passes it the process's runtime and this app.
"""

from __future__ import annotations

import logging

from . import failpoints, task_names, tracing
from .celery_app import app
from .errors import InvalidInput
from .jobs import checking, completion, parking, submission
from .jobs.arguments import DEFAULT_MODEL, check_arguments, tenant_or_default, valid_job_id
from .jobs.sweeping import sweep as run_sweep
from .jobs.timing import CLAIM_LEASE_MS
from .results.downloading import download_job_result
from .runtime import runtime
from .store.states import FINISHED, JobState

log = logging.getLogger("kie_queue.tasks")


@app.task(name=task_names.GENERATE, bind=True)
def generate(self, input=None, model: str = DEFAULT_MODEL, job_id: str | None = None,
             timeout: float | None = None, allow_unknown_model: bool = False, retry_failed: bool = False,
             tenant: str | None = None, priority: int = 0):
    """Submit one generation; the chain continues with the result dict when kie.ai has finished it.

    A ``job_id`` used before returns that job's outcome (a success always as is); with
    ``retry_failed=True`` a failed, timed-out or cancelled job is run again (a new upstream task).
    The same ``job_id`` with a different model or input is ``InvalidInput`` (field ``job_id``).
    ``tenant`` (default ``default``) names the service the job is for: tenants share each account's
    budget by weight; ``priority`` (0-9, higher first) orders one tenant's waiting jobs."""
    rt = runtime()
    store = rt.store
    try:
        cleaned = check_arguments(input, model, job_id, timeout, allow_unknown_model, retry_failed=retry_failed,
                                  tenant=tenant, priority=priority)
    except InvalidInput as exc:
        if valid_job_id(job_id):
            store.reject(job_id, model=str(model), error=exc.message)
        store.incr("jobs_rejected")
        raise
    job_id = job_id or self.request.id
    parked = tracing.carry(parking.capture(self.request))
    if store.waiter_done(job_id, self.request.id):
        # A redelivery of a call already finished: restore its final state, run nothing.
        completion.repair_waiter(rt, app, job_id, parked)
        raise parking.stop()
    parking.mark_submitted(self, job_id)
    state, created, _ = store.accept(
        job_id, model=model, input=cleaned, timeout=float(timeout or rt.settings.job_timeout),
        waiter_id=self.request.id, waiter=parked, first_claim_ms=CLAIM_LEASE_MS, retry_failed=retry_failed,
        tenant=tenant_or_default(tenant), priority=priority)
    failpoints.hit("submit.after_accept")
    if state == "conflict":
        store.incr("job_id_conflicts")
        raise InvalidInput({"job_id": ["already used with a different input"]}, model, job_id)
    if created:
        store.incr("jobs_accepted")
        submission.attempt(rt, app, job_id)
    elif state in FINISHED:
        completion.finish_waiters(rt, app, job_id)
    elif state == JobState.ACCEPTED:
        submission.attempt(rt, app, job_id)
    if state in FINISHED and not created:
        log.info("job %s already %s: the chain goes on with its stored outcome", job_id, state)
    else:
        log.info("job %s parked: waiting for kie.ai (the chain resumes when the job finishes)", job_id)
    raise parking.stop()


@app.task(name=task_names.SUBMIT, ignore_result=True)
def submit(job_id: str):
    """A due createTask attempt (handed out by a worker's due-queue pump or beat's sweep)."""
    return submission.attempt(runtime(), app, job_id)


@app.task(name=task_names.CHECK, ignore_result=True)
def check(job_id: str):
    """A due status check of a submitted job (sent by the sweep)."""
    return checking.check(runtime(), app, job_id)


@app.task(name=task_names.COMPLETE, bind=True, max_retries=5, ignore_result=True)
def complete(self, job_id: str):
    """A callback for ``job_id`` was recorded by the webhook."""
    verdict = checking.from_callback(runtime(), app, job_id)
    if verdict == "retry":   # kie.ai could not confirm the callback's task yet
        raise self.retry(countdown=min(30, 2 ** self.request.retries))
    return verdict


@app.task(name=task_names.SWEEP, ignore_result=True)
def sweep():
    """Hand due submissions and status checks to workers (beat sends this every ``KIE_SWEEP_INTERVAL``)."""
    return run_sweep(runtime(), app)


@app.task(name=task_names.DOWNLOAD, bind=True, max_retries=3)
def download(self, result: dict):
    """Copy every result URL into storage; returns the result with ``files`` added."""
    if parking.completed_before(self):
        log.info("kie.download %s ran already and sent its next step: this redelivery does nothing",
                 self.request.id)
        raise parking.stop()
    return download_job_result(self, runtime(), result)
