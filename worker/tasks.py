"""The Celery tasks, by their stable names.

Public (other services ``send_task`` these by name):

* ``kie.generate(input, model="google/nano-banana", job_id=None, timeout=None)``
* ``kie.download(result)``

Internal (sent by the project itself): ``kie.submit`` (a due createTask attempt), ``kie.check``
(a due status poll), ``kie.complete`` (a callback was recorded), ``kie.sweep`` (beat, every second:
hands due jobs to workers).  Each is safe to run twice.  The logic lives in ``submission``,
``checking`` and ``completion``; these are thin entry points.
"""

from __future__ import annotations

import logging
import re

from . import checking, completion, parking, submission
from .celery_app import app
from .errors import InvalidInput
from .runtime import runtime
from .schemas import validate_input

log = logging.getLogger("kie_queue.tasks")

_JOB_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
DEFAULT_MODEL = "google/nano-banana"


def _check_arguments(input, model, job_id, timeout, allow_unknown_model):
    errors = {}
    if not isinstance(model, str) or not model:
        errors["model"] = [f"must be a non-empty string, got {model!r}"]
    if job_id is not None and (not isinstance(job_id, str) or not _JOB_ID.match(job_id)):
        errors["job_id"] = [f"must be 1-128 letters, digits or ._:-, got {job_id!r}"]
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not 0 < timeout <= 7 * 86400):
        errors["timeout"] = [f"must be a number of seconds in (0, 604800], got {timeout!r}"]
    if errors:
        raise InvalidInput(errors, model if isinstance(model, str) else None, job_id if isinstance(job_id, str) else None)
    try:
        return validate_input(model, input, allow_unknown_model=allow_unknown_model)
    except InvalidInput as exc:
        raise InvalidInput(exc.errors, model, job_id) from None


@app.task(name="kie.generate", bind=True)
def generate(self, input=None, model: str = DEFAULT_MODEL, job_id: str | None = None,
             timeout: float | None = None, allow_unknown_model: bool = False):
    """Submit one generation; the chain continues with the result dict when kie.ai has finished it."""
    rt = runtime()
    try:
        cleaned = _check_arguments(input, model, job_id, timeout, allow_unknown_model)
    except InvalidInput as exc:
        if job_id and _JOB_ID.match(str(job_id)):
            rt.store.reject(job_id, model=str(model), error=exc.message)
        rt.store.incr("jobs_rejected")
        raise
    job_id = job_id or self.request.id
    store = rt.store
    parked = parking.capture(self.request)
    if store.waiter_done(job_id, self.request.id):
        # A redelivery of a call already finished: restore its final state, run nothing.
        completion.repair_waiter(rt, job_id, parked)
        raise parking.stop()
    parking.mark_submitted(self, job_id)
    state, created, _ = store.accept(
        job_id, model=model, input=cleaned, timeout=float(timeout or rt.settings.job_timeout),
        waiter_id=self.request.id, waiter=parked, first_claim_ms=submission.CLAIM_LEASE_MS)
    if created:
        store.incr("jobs_accepted")
        submission.attempt(rt, job_id)
    elif state in ("succeeded", "failed", "timed_out"):
        completion.finish_waiters(rt, job_id)
    elif state == "accepted":
        submission.attempt(rt, job_id)
    raise parking.stop()


@app.task(name="kie.submit")
def submit(job_id: str):
    """A due createTask attempt (handed out by a worker's due-queue pump or beat's sweep)."""
    return submission.attempt(runtime(), job_id)


@app.task(name="kie.check")
def check(job_id: str):
    """A due status check of a submitted job (sent by the sweep)."""
    return checking.check(runtime(), job_id)


@app.task(name="kie.complete", bind=True, max_retries=5)
def complete(self, job_id: str):
    """A callback for ``job_id`` was recorded by the webhook."""
    verdict = checking.from_callback(runtime(), job_id)
    if verdict == "retry":   # kie.ai could not confirm the callback's task yet
        raise self.retry(countdown=min(30, 2 ** self.request.retries))
    return verdict


@app.task(name="kie.sweep", ignore_result=True)
def sweep():
    """Hand due submissions and status checks to workers (beat sends this every ``KIE_SWEEP_INTERVAL``)."""
    from .sweeping import sweep as run_sweep
    return run_sweep(runtime(), submit, check)


@app.task(name="kie.download", bind=True, max_retries=3)
def download(self, result: dict):
    """Copy every result URL into storage; returns the result with ``files`` added."""
    from .downloading import download_job_result
    return download_job_result(self, runtime(), result)
