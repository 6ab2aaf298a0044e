"""One createTask attempt for a job, and the retry policy around it, readable in one place.

:func:`attempt` claims the job (a lease in the job store), asks its account's limiter whether the
create may go now (a grant, fair across tenants), records that a create is going out, POSTs it
with the account's key, and hands the answer to the one handler for its kind.  Every outcome
leaves the job in exactly one place: submitted (polled or called back), waiting in its tenant's
ready queue (for a grant: rate, in-flight cap, pause, other tenants' turn), waiting in the due
queue (a grant's window still full, a backoff, or the grace period of an unknown outcome), or
finished.

The policy (``POLICY`` maps each error class to its handler, most specific first):

=====================================  ============================================================
answer                                 what happens (handler)
=====================================  ============================================================
taskId                                 submitted; status checks start (:func:`_submitted`)
429 (HTTP status or body code)         shared cool-down for every worker (``Retry-After`` if given,
                                       else 1 s) plus 0-1 s jitter; no error-retry spent
                                       (:func:`_rate_limited`)
402 insufficient credits               this job fails (with ``KIE_MIN_CREDITS`` set: it waits
                                       instead); the account's submissions pause for 300 s,
                                       lifted sooner by the sweep's credit check or
                                       ``kie-queue resume`` (:func:`_no_credits`)
timeout / reset after sending,         outcome unknown (a task may exist and be billed): the job
unreadable answer                      waits ``KIE_UNKNOWN_OUTCOME_GRACE`` s for the callback that
                                       would reveal it, then is resubmitted and counted
                                       (:func:`_unknown_outcome`)
455, 500, other 5xx, refused connect   retried with exponential backoff and full jitter
                                       (``KIE_BACKOFF_BASE`` · 2^n, capped at ``KIE_BACKOFF_CAP``),
                                       at most ``KIE_MAX_ATTEMPTS`` errors, then the job fails
                                       (:func:`_transient`)
401, 404, 422, 433, 505                the job fails at once with the upstream code and message
                                       (:func:`_refused`)
=====================================  ============================================================
"""

from __future__ import annotations

import dataclasses
import json
import logging

from .. import failpoints
from ..errors import (InsufficientCredits, MalformedResponse, RateLimited, RetryableUpstreamError,
                      TransportError, UpstreamError)
from ..kie.schemas import build_create_body
from ..logs import bind as bind_log
from ..tokens import callback_url
from . import completion
from .arguments import DEFAULT_TENANT
from .timing import (CLAIM_LEASE_MS, COOLDOWN_DEFAULT_S, CREDIT_PAUSE_S, backoff, first_check_delay, jittered,
                     send_lease_ms)

log = logging.getLogger("kie_queue.submission")


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One create in flight: what every handler needs to settle it."""

    rt: object
    app: object
    job_id: str
    job: dict
    token: str      # the claim's fencing token in the job store
    member: str     # the create's entry in the limiter's log
    account: object  # the kie.ai account (limiter, client) the job is sent with


def attempt(rt, app, job_id: str) -> str:
    """Try to submit ``job_id`` now.  Returns what happened (for logs and tests)."""
    s, store = rt.settings, rt.store
    verdict, _, token = store.claim_submit(job_id, lease_ms=CLAIM_LEASE_MS,
                                           unknown_grace_ms=int(s.unknown_outcome_grace * 1000))
    if verdict == "resubmit":
        store.incr("resubmitted_after_unknown")
        log.warning("job %s: resubmitting after an unknown create outcome (a duplicate task may exist)", job_id)
    elif verdict != "claimed":
        return verdict
    failpoints.hit("submit.after_claim")
    job = store.get(job_id)
    account = rt.account_of(job)
    tenant = job.get("tenant") or DEFAULT_TENANT
    allowed, wait, reason, member = account.limiter.acquire(job_id, token, tenant=tenant,
                                                            priority=int(job.get("priority") or 0))
    if not allowed:
        if reason == "reserved":     # granted, but the window ending now is full: back in a moment
            store.defer(job_id, token, delay_ms=int(wait * 1000), reason=reason)
        # any other reason: the job waits in its tenant's ready queue (the claim was given back)
        store.incr(f"waits_{reason}")
        log.info("job %s (tenant %s) waits (%s)", job_id, tenant, reason)
        return f"waiting:{reason}"

    cb = callback_url(s.callback_url, job_id, s.webhook_secret) if s.callback_url else None
    body = build_create_body(job["model"], json.loads(job["input"]), cb)
    sending = store.mark_sending(job_id, token, send_lease_ms=send_lease_ms(s))
    if sending == 0:
        account.limiter.release(job_id)
        return "lost-claim"
    if sending == 1:
        store.metrics.since("kie_limiter_wait_seconds", job.get("created_at"))
    store.incr("creates_sent")
    failpoints.hit("submit.after_mark_sending")
    now = Attempt(rt, app, job_id, job, token, member, account)
    try:
        task_id = account.client.create_task(body)
    except UpstreamError as exc:
        return _handler_for(exc)(now, exc)
    failpoints.hit("submit.after_create")
    return _submitted(now, task_id)


# -- one handler per outcome --------------------------------------------------------------------

def _submitted(a: Attempt, task_id: str) -> str:
    rt, s = a.rt, a.rt.settings
    a.account.limiter.confirm(a.member)
    rt.store.incr("creates_accepted")
    bind_log(upstream_task_id=task_id)
    recorded = rt.store.record_task(a.job_id, task_id, first_check_ms=int(first_check_delay(s) * 1000),
                                    timeout_ms=int(float(a.job["timeout"]) * 1000), source="create")
    failpoints.hit("submit.after_record")
    if recorded == "duplicate":
        rt.store.incr("duplicate_tasks")
        log.warning("job %s: upstream task %s is a duplicate of an earlier one (billed twice)", a.job_id, task_id)
    elif recorded == "cancelled":
        a.account.limiter.release(a.job_id)
        log.info("job %s was cancelled while its create was in flight; task %s is ignored", a.job_id, task_id)
        return "cancelled"
    return "submitted"


def _rate_limited(a: Attempt, exc: RateLimited) -> str:
    rt = a.rt
    a.account.limiter.release(a.job_id)
    pause = exc.retry_after if exc.retry_after is not None else COOLDOWN_DEFAULT_S
    a.account.limiter.cool_down(pause)
    rt.store.incr("upstream_429")
    rt.store.defer(a.job_id, a.token, delay_ms=int(jittered(pause, 1.0) * 1000), reason="429", error=exc.message)
    log.info("job %s: kie.ai answered 429; creates pause %.1f s", a.job_id, pause)
    return "rate-limited"


def _no_credits(a: Attempt, exc: InsufficientCredits) -> str:
    rt = a.rt
    a.account.limiter.release(a.job_id)
    a.account.limiter.pause(CREDIT_PAUSE_S, "402")
    rt.store.incr("upstream_402")
    if rt.settings.min_credits is not None:
        # the credit guard is on: the job waits for credits with the account's other jobs
        rt.store.defer(a.job_id, a.token, delay_ms=int(CREDIT_PAUSE_S * 1000), reason="paused", error=exc.message)
        log.error("kie.ai answered 402 (insufficient credits): submissions of account %s paused until the "
                  "credit check sees credits again; job %s waits", a.account.id, a.job_id)
        return "waiting:paused"
    log.error("kie.ai answered 402 (insufficient credits): submissions of account %s paused for %.0f s or "
              "until `kie-queue resume`", a.account.id, CREDIT_PAUSE_S)
    completion.fail(rt, a.app, a.job_id, fail_code=exc.code, fail_msg=exc.msg)
    return "failed"


def _unknown_outcome(a: Attempt, exc: UpstreamError) -> str:
    """The create may have made a (billed) task: never re-POST blindly."""
    rt, grace = a.rt, a.rt.settings.unknown_outcome_grace
    a.account.limiter.confirm(a.member)
    rt.store.defer(a.job_id, a.token, delay_ms=int(grace * 1000), reason="unknown", error=exc.message,
                   count_error=True, outcome_unknown=True)
    rt.store.incr("creates_unknown_outcome")
    log.warning("job %s: create outcome unknown (%s); waiting %.0f s for a callback before resubmitting",
                a.job_id, exc.message, grace)
    return "unknown"


def _transient(a: Attempt, exc: UpstreamError) -> str:
    rt, s = a.rt, a.rt.settings
    if not isinstance(exc, TransportError):   # kie.ai answered: the request counts against the window
        a.account.limiter.confirm(a.member)
    a.account.limiter.release(a.job_id)
    errors = int(a.job.get("errors") or 0) + 1
    rt.store.incr("upstream_retryable_errors")
    if errors >= s.max_attempts:
        log.warning("job %s: giving up after %d errors: %s", a.job_id, errors, exc.message)
        completion.fail(rt, a.app, a.job_id, fail_code=exc.code,
                        fail_msg=f"gave up after {errors} attempts: {exc.message}")
        return "failed"
    delay = max(0.05, backoff(errors, base=s.backoff_base, cap=s.backoff_cap))
    rt.store.defer(a.job_id, a.token, delay_ms=int(delay * 1000), reason="retry", error=exc.message,
                   count_error=True)
    log.info("job %s: retrying in %.2f s after %s", a.job_id, delay, exc.message)
    return "retrying"


def _refused(a: Attempt, exc: UpstreamError) -> str:
    rt = a.rt
    a.account.limiter.release(a.job_id)
    rt.store.incr(f"upstream_{exc.code}")
    log.warning("job %s: kie.ai refused the create for good: %s", a.job_id, exc.message)
    completion.fail(rt, a.app, a.job_id, fail_code=exc.code, fail_msg=exc.msg)
    return "failed"


def _transport(a: Attempt, exc: TransportError) -> str:
    return (_unknown_outcome if exc.sent else _transient)(a, exc)


POLICY = (
    (RateLimited, _rate_limited),
    (InsufficientCredits, _no_credits),
    (TransportError, _transport),
    (MalformedResponse, _unknown_outcome),
    (RetryableUpstreamError, _transient),
    (UpstreamError, _refused),
)
"""Error class → handler, most specific first (the table in the module docstring)."""


def _handler_for(exc: UpstreamError):
    return next(handler for kind, handler in POLICY if isinstance(exc, kind))
