"""The global createTask limiter: a sliding-window log, an in-flight cap and shared pauses, in Redis.

One Lua call decides whether a create may go out *now*, for every worker on every host:

* **Sliding-window log with reservations** (sorted set of create times): at most ``limit`` creates
  in ANY window of ``window`` seconds.  Unlike a token bucket (capacity 20 refilling at 2/s lets 40
  through in some 10-s spans) or GCRA (never bursts, so 60 creates take 29.5 s instead of 20 s), the
  log uses the whole budget and never exceeds it.  A job that cannot go now is not just told "later":
  it is given the earliest future slot that keeps every window within the limit, in arrival order,
  so N waiting jobs wake at N distinct moments instead of all retrying at each window edge.
  Cost: one sorted-set entry per create in the last window, plus one per waiting job.
  After the HTTP answer, :meth:`Limiter.confirm` moves the entry to the answer's time: the upstream
  received the request somewhere between the two, so the window is counted from the latest moment
  it can have started, and a slow request never lets two windows overlap upstream.
* **In-flight cap**: a slot per job (sorted set job id → lease expiry), held from the create until the
  job's terminal outcome; leases expire so a lost job cannot hold a slot for ever.
* **Pauses**: a 429 sets a short shared cool-down (honouring ``Retry-After``); a 402 pauses
  submissions for longer.  Both are keys with a TTL.

:meth:`Limiter.acquire` answers ``(allowed, wait_seconds, reason, member)``; a job told to wait
sits in the job store's due queue, not in a worker.  Time comes from the Redis server's clock.
Keys are per account: a hash of the API key.  The scripts are ``lua/acquire.lua``,
``lua/confirm.lua`` and ``lua/pause.lua``.
"""

from __future__ import annotations

from .keys import Keys, account_id
from .scripts import Scripts

# Windows are counted MARGIN_MS longer than the upstream's: a create reaches kie.ai a little after
# the moment it was granted (dispatch lateness + network), and the margin absorbs that.
# Cost: MARGIN_MS per window (1 % of 20/10 s).
MARGIN_MS = 100


class Limiter:
    """Create-rate limiter and in-flight cap of one kie.ai account, shared through Redis."""

    def __init__(self, redis, prefix: str, api_key: str | None, *, limit: int, window: float,
                 max_in_flight: int, slot_lease: float):
        self.redis = redis
        keys = Keys(prefix)
        account = account_id(api_key)
        self.log_key = keys.rate_log(account)
        self.cooldown_key = keys.cooldown(account)
        self.paused_key = keys.paused(account)
        self.inflight_key = keys.inflight(account)
        self.reservations_key = keys.reservations(account)
        self.limit = limit
        self.window_ms = int(window * 1000)
        self.max_in_flight = max_in_flight
        self.slot_lease_ms = int(slot_lease * 1000)
        self._run = Scripts(redis)

    @classmethod
    def for_settings(cls, redis, settings) -> "Limiter":
        """The limiter of the configured account (``KIE_API_KEY``, ``KIE_RATE_LIMIT``, ``KIE_MAX_IN_FLIGHT``).

        A slot's lease outlives any job: the sweep times jobs out, and frees their slots, long before.
        """
        return cls(redis, settings.key_prefix, settings.api_key, limit=settings.rate_limit.limit,
                   window=settings.rate_limit.window, max_in_flight=settings.max_in_flight,
                   slot_lease=settings.job_timeout * 2 + 600)

    def acquire(self, job_id: str, attempt_member: str) -> tuple[bool, float, str, str | None]:
        """Take a create slot and the job's in-flight slot.

        Returns (allowed, wait_seconds, reason, member): when not allowed, the job must come back
        after ``wait_seconds`` (for reason ``rate`` a slot is reserved for it then); when allowed,
        ``member`` names the create's log entry for :meth:`confirm`.
        """
        allowed, wait_ms, reason, *member = self._run(
            "acquire", keys=[self.log_key, self.cooldown_key, self.paused_key, self.inflight_key, self.reservations_key],
            args=[self.window_ms, self.limit, attempt_member, self.max_in_flight, self.slot_lease_ms, job_id,
                  MARGIN_MS])
        reason = reason.decode() if isinstance(reason, bytes) else reason
        member = member[0].decode() if member and isinstance(member[0], bytes) else (member[0] if member else None)
        return bool(allowed), int(wait_ms) / 1000.0, reason, member

    def confirm(self, attempt_member: str) -> None:
        """Count the create's window from the moment its answer arrived (see the module docstring)."""
        self._run("confirm", keys=[self.log_key], args=[attempt_member])

    def release(self, job_id: str) -> None:
        """Free the job's in-flight slot (terminal outcome, or a create that made no task)."""
        self.redis.zrem(self.inflight_key, job_id)

    def in_flight(self) -> int:
        return int(self.redis.zcard(self.inflight_key))

    def in_flight_jobs(self) -> list[str]:
        return [m.decode() if isinstance(m, bytes) else m for m in self.redis.zrange(self.inflight_key, 0, -1)]

    def cool_down(self, seconds: float) -> None:
        """Pause creates for every worker (after a 429)."""
        self._run("pause", keys=[self.cooldown_key], args=[max(1, int(seconds * 1000))])

    def pause(self, seconds: float) -> None:
        """Pause submissions for every worker (after a 402: no credits)."""
        self._run("pause", keys=[self.paused_key], args=[max(1, int(seconds * 1000))])

    def resume(self) -> None:
        """Clear a 402 pause (an operator topped up the account)."""
        self.redis.delete(self.paused_key)

    def paused_for(self) -> float:
        return max(0, int(self.redis.pttl(self.paused_key))) / 1000.0
