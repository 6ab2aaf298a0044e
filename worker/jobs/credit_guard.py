"""The credit guard: an account whose balance is below ``KIE_MIN_CREDITS`` stops submitting.

Below the minimum the account's submissions pause (like a 402, reason ``low_credits``) instead of
failing jobs one by one: its jobs keep their places in their tenants' ready queues.  A balance is
observed from every success (``remainedCredits`` of a callback or status answer) and from the
sweep's periodic ``GET /api/v1/chat/credit`` (``worker.jobs.sweeping``), which also lifts the pause
once the balance is back (at or above the minimum; above zero after a 402 with no minimum set).
"""

from __future__ import annotations

import logging

log = logging.getLogger("kie_queue.credits")

LOW_CREDITS_PAUSE_S = 3600.0
"""How long a low-balance pause lasts if no check lifts it (the sweep checks every 30 s)."""


def observe(rt, account, credits: float | None) -> None:
    """Act on an account's balance: pause it below the minimum, resume it when it is back."""
    if credits is None:
        return
    minimum = rt.settings.min_credits
    limiter = account.limiter
    if minimum is not None and credits < minimum:
        if limiter.paused_for() <= 0:
            log.warning("account %s has %.2f credits, below KIE_MIN_CREDITS=%g: its submissions pause",
                        account.id, credits, minimum)
            rt.store.incr("credit_pauses")
        limiter.pause(LOW_CREDITS_PAUSE_S, f"low_credits: {credits:g} < {minimum:g}")
        return
    if limiter.paused_for() > 0 and credits > 0:
        limiter.resume()
        rt.store.wake_submits()
        log.info("account %s has credits again (%.2f): submissions resume", account.id, credits)
