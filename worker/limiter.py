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

The answer is ``(allowed, wait_seconds, reason)``; waiting jobs sit in the job store's due queue.
Time comes from the Redis server's clock.  Keys are per account: a hash of the API key.
"""

from __future__ import annotations

import random

from .keys import Keys, account_id

_ACQUIRE = """
-- KEYS: 1 rate log, 2 cooldown, 3 paused, 4 inflight, 5 reservations
-- ARGV: 1 window_ms, 2 limit, 3 member, 4 max_in_flight, 5 slot_lease_ms, 6 job_id, 7 margin_ms
-- The log holds past creates and future reservations (member -> ms).  A job that cannot go now is
-- given the earliest slot that keeps every window within the limit (appended after every other
-- reservation: first come, first served) and told to come back then; coming back it redeems it.
-- Returns {allowed (0/1), wait_ms, reason, log member of the create (when allowed)}.
local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local p = redis.call('PTTL', KEYS[3])
if p > 0 then return {0, p, 'paused'} end
local c = redis.call('PTTL', KEYS[2])
if c > 0 then return {0, c, 'cooldown'} end
local window, limit, margin = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local held = redis.call('ZSCORE', KEYS[4], ARGV[6])
if not held and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[4]) then
  local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  return {0, math.min(1000, math.max(50, tonumber(first[2]) - now)), 'in_flight'}
end
-- entries this old can no longer bind any decision taken from now on
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window - margin - 1)
local function take(member, at)
  redis.call('PEXPIRE', KEYS[1], math.max(at - now, 0) + window * 2 + 60000)
  redis.call('PEXPIRE', KEYS[5], math.max(at - now, 0) + window * 2 + 60000)
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]), ARGV[6])
  return {1, 0, 'ok', member}
end
local mine = redis.call('HGET', KEYS[5], ARGV[6])
if mine then
  local at = redis.call('ZSCORE', KEYS[1], mine)
  if at then
    at = tonumber(at)
    if at > now then return {0, at - now, 'reserved'} end
    -- Redeem at `now` (on time or late) if the window ending now still has room: every grant is
    -- checked against what was really sent, so a late job, or a create confirmed late, can never
    -- crowd a window; it only slips the slots planned after it.  (The margin was spent when the
    -- slot was planned; confirmed entries sit at their answer time, after their real arrival.)
    local others = {}
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - window), now)) do
      if m ~= mine then others[#others + 1] = m end
    end
    if #others < limit then
      redis.call('ZADD', KEYS[1], now, mine)
      redis.call('HDEL', KEYS[5], ARGV[6])
      return take(mine, now)
    end
    -- crowded: slip this reservation to when the window ending then has room (it keeps its place)
    local bind = tonumber(redis.call('ZSCORE', KEYS[1], others[#others - limit + 1]))
    local slip = math.max(now + 1, bind + window + 1)
    redis.call('ZADD', KEYS[1], slip, mine)
    return {0, slip - now, 'reserved'}
  end
  redis.call('HDEL', KEYS[5], ARGV[6])
end
local n = redis.call('ZCARD', KEYS[1])
local at = now
if n >= limit then
  local bind = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  at = math.max(now, tonumber(bind[2]) + window + margin)
end
redis.call('ZADD', KEYS[1], at, ARGV[3])
if at <= now then return take(ARGV[3], at) end
redis.call('HSET', KEYS[5], ARGV[6], ARGV[3])
redis.call('PEXPIRE', KEYS[1], at - now + window * 2 + 60000)
redis.call('PEXPIRE', KEYS[5], at - now + window * 2 + 60000)
return {0, at - now, 'rate'}
"""

_CONFIRM = """
-- KEYS: 1 rate log   ARGV: 1 member
-- Moves a create's entry to now (the moment its answer arrived), if it is still in the log.
local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'XX', 'GT', now, ARGV[1])
"""

_PAUSE = """
-- KEYS: 1 pause key   ARGV: 1 ms
-- Sets or extends (never shortens) a pause.
local p = redis.call('PTTL', KEYS[1])
if p < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', tonumber(ARGV[1])) end
return 1
"""


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
        self._acquire = redis.register_script(_ACQUIRE)
        self._confirm = redis.register_script(_CONFIRM)
        self._pause = redis.register_script(_PAUSE)

    def acquire(self, job_id: str, attempt_member: str) -> tuple[bool, float, str, str | None]:
        """Take a create slot and the job's in-flight slot.

        Returns (allowed, wait_seconds, reason, member): when not allowed, the job must come back
        after ``wait_seconds`` (for reason ``rate`` a slot is reserved for it then); when allowed,
        ``member`` names the create's log entry for :meth:`confirm`.
        """
        allowed, wait_ms, reason, *member = self._acquire(
            keys=[self.log_key, self.cooldown_key, self.paused_key, self.inflight_key, self.reservations_key],
            args=[self.window_ms, self.limit, attempt_member, self.max_in_flight, self.slot_lease_ms, job_id,
                  MARGIN_MS])
        reason = reason.decode() if isinstance(reason, bytes) else reason
        member = member[0].decode() if member and isinstance(member[0], bytes) else (member[0] if member else None)
        return bool(allowed), int(wait_ms) / 1000.0, reason, member

    def confirm(self, attempt_member: str) -> None:
        """Count the create's window from the moment its answer arrived (see the module docstring)."""
        self._confirm(keys=[self.log_key], args=[attempt_member])

    def release(self, job_id: str) -> None:
        """Free the job's in-flight slot (terminal outcome, or a create that made no task)."""
        self.redis.zrem(self.inflight_key, job_id)

    def in_flight(self) -> int:
        return int(self.redis.zcard(self.inflight_key))

    def in_flight_jobs(self) -> list[str]:
        return [m.decode() if isinstance(m, bytes) else m for m in self.redis.zrange(self.inflight_key, 0, -1)]

    def cool_down(self, seconds: float) -> None:
        """Pause creates for every worker (after a 429)."""
        self._pause(keys=[self.cooldown_key], args=[max(1, int(seconds * 1000))])

    def pause(self, seconds: float) -> None:
        """Pause submissions for every worker (after a 402: no credits)."""
        self._pause(keys=[self.paused_key], args=[max(1, int(seconds * 1000))])

    def resume(self) -> None:
        """Clear a 402 pause (an operator topped up the account)."""
        self.redis.delete(self.paused_key)

    def paused_for(self) -> float:
        return max(0, int(self.redis.pttl(self.paused_key))) / 1000.0


def jittered(wait: float, spread: float) -> float:
    """``wait`` plus a random 0..spread seconds, so waiting workers do not return together."""
    return wait + random.uniform(0, spread)


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
    return random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))
