"""One createTask attempt for a job, and the retry policy around it, readable in one place.

:func:`attempt` claims the job (a lease in the job store), takes a token from the global limiter,
records that a create is going out, POSTs it, and records the answer.  Every outcome leaves the job
in exactly one place: submitted (polled or called back), waiting in the due queue (for a token, a
cool-down, a backoff, or the grace period of an unknown outcome), or finished.

The policy:

=====================================  ============================================================
answer                                 what happens
=====================================  ============================================================
taskId                                 submitted; status checks start
429 (HTTP status or body code)         shared cool-down for every worker (``Retry-After`` if given,
                                       else 1 s) plus 0-1 s jitter; no error-retry spent
402 insufficient credits               submissions paused for every worker (``KIE_CREDIT_PAUSE``,
                                       default 300 s, or until ``kie-queue resume``); job waits
455, 500, other 5xx, refused connect   retried with exponential backoff and full jitter
                                       (``KIE_BACKOFF_BASE`` · 2^n, capped at ``KIE_BACKOFF_CAP``),
                                       at most ``KIE_MAX_ATTEMPTS`` errors, then the job fails
timeout / reset after sending          outcome unknown (a task may exist and be billed): the job
                                       waits ``KIE_UNKNOWN_OUTCOME_GRACE`` s for the callback that
                                       would reveal it, then is resubmitted and counted
401, 402, 404, 422, 433, 505           the job fails at once with the upstream code and message
=====================================  ============================================================
"""

from __future__ import annotations

import json
import logging
import uuid

from . import completion
from .errors import (InsufficientCredits, MalformedResponse, RateLimited, RetryableUpstreamError,
                     TransportError, UpstreamError)
from .limiter import backoff, jittered
from .schemas import build_create_body
from .tokens import callback_url

log = logging.getLogger("kie_queue.submission")

# A claim first covers the few Redis steps before the POST (a worker that dies there delays the job
# by at most this), then is extended over the request itself (send_lease_ms).
CLAIM_LEASE_MS = 2_000
CREDIT_PAUSE_S = 300.0
COOLDOWN_DEFAULT_S = 1.0


def send_lease_ms(s) -> int:
    """How long a claim lasts once the create is going out: longer than one request can take."""
    return int((s.http_timeout + 5) * 1000)


def first_check_delay(s) -> float:
    """Seconds from submission to the first status check: the callback's grace, or the first poll."""
    return s.callback_grace if s.callback_url else poll_delay(0.0)


def poll_delay(age: float) -> float:
    """kie.ai's suggested polling interval for a task ``age`` seconds old."""
    if age < 30:
        return 2.5
    if age < 120:
        return 7.5
    return 20.0


def attempt(rt, job_id: str) -> str:
    """Try to submit ``job_id`` now.  Returns what happened (for logs and tests)."""
    s, store = rt.settings, rt.store
    verdict, wait_ms, token = store.claim_submit(job_id, lease_ms=CLAIM_LEASE_MS,
                                                 unknown_grace_ms=int(s.unknown_outcome_grace * 1000))
    if verdict == "resubmit":
        store.incr("resubmitted_after_unknown")
        log.warning("job %s: resubmitting after an unknown create outcome (a duplicate task may exist)", job_id)
    elif verdict != "claimed":
        return verdict
    job = store.get(job_id)
    member = f"{job_id}:{uuid.uuid4().hex[:8]}"
    allowed, wait, reason, member = rt.limiter.acquire(job_id, member)
    if not allowed:
        if reason in ("cooldown", "paused", "in_flight"):
            wait = jittered(wait, 1.0)
        store.defer(job_id, token, delay_ms=int(wait * 1000), reason=reason)
        store.incr(f"waits_{reason}")
        log.info("job %s waits %.2f s (%s)", job_id, wait, reason)
        return f"waiting:{reason}"

    cb = callback_url(s.callback_url, job_id, s.webhook_secret) if s.callback_url else None
    body = build_create_body(job["model"], json.loads(job["input"]), cb)
    n = store.mark_sending(job_id, token, send_lease_ms=send_lease_ms(s))
    if n == 0:
        rt.limiter.release(job_id)
        return "lost-claim"
    store.incr("creates_sent")
    try:
        task_id = rt.client.create_task(body)
    except RateLimited as exc:
        rt.limiter.release(job_id)
        pause = exc.retry_after if exc.retry_after is not None else COOLDOWN_DEFAULT_S
        rt.limiter.cool_down(pause)
        store.incr("upstream_429")
        store.defer(job_id, token, delay_ms=int(jittered(pause, 1.0) * 1000), reason="429", error=exc.message)
        log.info("job %s: kie.ai answered 429; creates pause %.1f s", job_id, pause)
        return "rate-limited"
    except InsufficientCredits as exc:
        # this job fails; the others wait until credits are back (sweep's credit check or `kie-queue resume`)
        rt.limiter.release(job_id)
        rt.limiter.pause(CREDIT_PAUSE_S)
        store.incr("upstream_402")
        log.error("kie.ai answered 402 (insufficient credits): submissions paused for %.0f s or until "
                  "`kie-queue resume`", CREDIT_PAUSE_S)
        completion.fail(rt, job_id, fail_code=exc.code, fail_msg=exc.msg)
        return "failed"
    except (TransportError, MalformedResponse) as exc:
        if isinstance(exc, MalformedResponse) or exc.sent:
            # The create may have made a (billed) task: never re-POST blindly.
            rt.limiter.confirm(member)
            store.defer(job_id, token, delay_ms=int(s.unknown_outcome_grace * 1000), reason="unknown",
                        error=exc.message, count_error=True, outcome_unknown=True)
            store.incr("creates_unknown_outcome")
            log.warning("job %s: create outcome unknown (%s); waiting %.0f s for a callback before resubmitting",
                        job_id, exc.message, s.unknown_outcome_grace)
            return "unknown"
        return _retry_or_fail(rt, job_id, token, job, exc)
    except RetryableUpstreamError as exc:
        rt.limiter.confirm(member)
        return _retry_or_fail(rt, job_id, token, job, exc)
    except UpstreamError as exc:
        rt.limiter.release(job_id)
        store.incr(f"upstream_{exc.code}")
        log.warning("job %s: kie.ai refused the create for good: %s", job_id, exc.message)
        completion.fail(rt, job_id, fail_code=exc.code, fail_msg=exc.msg)
        return "failed"
    rt.limiter.confirm(member)
    recorded = store.record_task(job_id, task_id, first_check_ms=int(first_check_delay(s) * 1000),
                                 timeout_ms=int(float(job["timeout"]) * 1000), source="create")
    if recorded == "duplicate":
        store.incr("duplicate_tasks")
        log.warning("job %s: upstream task %s is a duplicate of an earlier one (billed twice)", job_id, task_id)
    return "submitted"


def _retry_or_fail(rt, job_id: str, token: str, job: dict, exc: UpstreamError) -> str:
    s = rt.settings
    rt.limiter.release(job_id)
    errors = int(job.get("errors") or 0) + 1
    rt.store.incr("upstream_retryable_errors")
    if errors >= s.max_attempts:
        log.warning("job %s: giving up after %d errors: %s", job_id, errors, exc.message)
        completion.fail(rt, job_id, fail_code=exc.code, fail_msg=f"gave up after {errors} attempts: {exc.message}")
        return "failed"
    delay = max(0.05, backoff(errors, base=s.backoff_base, cap=s.backoff_cap))
    rt.store.defer(job_id, token, delay_ms=int(delay * 1000), reason="retry", error=exc.message, count_error=True)
    log.info("job %s: retrying in %.2f s after %s", job_id, delay, exc.message)
    return "retrying"
