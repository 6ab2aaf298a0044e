"""Automatic re-generation after a transient upstream failure: the rule and the step.

A task that kie.ai reports as ``fail`` with a *transient* failCode is generated again as a new
upstream task (the job's next generation, on its timeline and in its ``generations``), at most
``KIE_GENERATION_RETRIES`` times (default 2) per run (a deliberate re-run, ``retry_failed=True`` or an
operator's retry, gets the whole budget again); the job's waiters keep waiting and see only the final
outcome.  Any other failCode fails the job at once.

Transient (``TRANSIENT_FAIL_CODES``): ``500`` (internal error; kie.ai charges nothing for it),
``455`` (maintenance), ``408`` (the upstream model gave nothing in time), and the gateway-style
``502``, ``503``, ``504``.  Not transient: content policy and request problems (``400``, ``422`` and
every other 4xx), ``501`` "generation failed" (kie.ai's verdict on the request itself, often content),
``505`` (feature disabled), and a failure with no code.
"""

from __future__ import annotations

import logging

from . import submission

log = logging.getLogger("kie_queue.regeneration")

TRANSIENT_FAIL_CODES = frozenset({"408", "455", "500", "502", "503", "504"})


def transient(fail_code) -> bool:
    """Whether an upstream generation failure with ``fail_code`` is worth a new upstream task."""
    return fail_code is not None and str(fail_code).strip() in TRANSIENT_FAIL_CODES


def maybe_regenerate(rt, app, job_id: str, outcome) -> bool:
    """Start the next generation of ``job_id`` if its failed task ``outcome`` is transient and the job
    has re-generations left.  True when the failure is handled here (the job is not to be failed)."""
    if not transient(outcome.fail_code):
        return False
    job = rt.store.get(job_id)
    if job is None:
        return False
    done, limit = int(job.get("regenerations") or 0), rt.settings.generation_retries
    if done >= limit:
        return False
    failure = {"error": "GenerationFailed", "fail_code": str(outcome.fail_code), "fail_msg": outcome.fail_msg,
               "task_id": outcome.task_id}
    detail = (f"task {outcome.task_id} failed with failCode {outcome.fail_code} ({outcome.fail_msg}); "
              f"re-generation {done + 1} of {limit}")
    new_generation, _ = rt.store.regenerate(job_id, task_id=outcome.task_id, outcome=failure, detail=detail)
    if new_generation:
        rt.account_of(job).limiter.release(job_id)
        rt.store.incr("regenerations")
        log.info("job %s: %s", job_id, detail)
        submission.attempt(rt, app, job_id)
    # not restarted: another worker did it for this same failure, or the job moved on (cancelled)
    return True
