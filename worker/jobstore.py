"""The job store: job records in Redis and every state transition, each one atomic (Lua).

A *job* is one upstream generation (one ``job_id``, normally one kie.ai taskId).
A *waiter* is one ``kie.generate`` invocation waiting on a job, with its parked
chain; several callers with the same ``job_id`` are several waiters on one job.

States: ``accepted → submitting → submitted → succeeded | failed | timed_out``
(``rejected`` for invalid input).  ``accepted`` jobs sit in the due-ordered
``due:submit`` set until a worker claims them; a claim is a lease, so a claim held
by a dead worker expires and another worker takes the job.  ``submitted`` jobs sit
in ``due:check`` until their next status poll or timeout.

Times inside scripts come from the Redis server's clock (``TIME``), so hosts with
skewed clocks agree; callers pass delays, not timestamps.  This module talks
only to Redis: no HTTP, no Celery.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from .keys import Keys

TERMINAL = ("succeeded", "failed", "timed_out", "rejected")

# A shared prologue: the server's clock in milliseconds.
_NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

_ACCEPT = _NOW + """
-- KEYS: 1 job, 2 waiters, 3 due_submit
-- ARGV: 1 job_id, 2 model, 3 input_json, 4 timeout_s, 5 waiter_id, 6 waiter_json, 7 first_claim_ms
-- Creates the job if absent (state accepted, due for submission after first_claim_ms: the caller
-- tries at once and the lease covers its death), then adds the waiter if absent.
-- Returns {state, created (0/1), waiter_added (0/1)}.
local created = 0
if redis.call('HGET', KEYS[1], 'state') == 'rejected' then
  -- an earlier call with this job id had invalid input and sent nothing upstream: start afresh
  redis.call('DEL', KEYS[1])
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'job_id', ARGV[1], 'state', 'accepted', 'model', ARGV[2], 'input', ARGV[3],
             'timeout', ARGV[4], 'created_at', now, 'updated_at', now, 'attempts', 0, 'errors', 0,
             'duplicates', 0, 'callbacks', 0)
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[7]), ARGV[1])
  created = 1
end
local added = redis.call('HSETNX', KEYS[2], ARGV[5], ARGV[6])
return {redis.call('HGET', KEYS[1], 'state'), created, added}
"""

_REJECT = _NOW + """
-- KEYS: 1 job   ARGV: 1 job_id, 2 model, 3 error_json
-- Records a job whose input was invalid, unless the job already exists.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'job_id', ARGV[1], 'state', 'rejected', 'model', ARGV[2], 'last_error', ARGV[3],
           'created_at', now, 'updated_at', now, 'finished_at', now)
return 1
"""

_CLAIM_SUBMIT = _NOW + """
-- KEYS: 1 job, 2 due_submit
-- ARGV: 1 job_id, 2 lease_ms, 3 claim_token, 4 unknown_grace_ms
-- Claims the right to submit the job.  Returns {verdict, wait_ms}:
--   'claimed'  the caller holds the claim (token) for lease_ms;
--   'busy'     another worker holds a live claim (wait_ms until it expires);
--   'unknown'  an earlier create's outcome is unknown: wait wait_ms for its callback;
--   'resubmit' as 'claimed', but after an unknown outcome whose grace passed (a possible duplicate);
--   any other state name: nothing to submit.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then redis.call('ZREM', KEYS[2], ARGV[1]); return {'missing', 0} end
local lease = tonumber(ARGV[2])
local function claim(verdict)
  redis.call('HSET', KEYS[1], 'state', 'submitting', 'claim', ARGV[3], 'claimed_until', now + lease,
             'updated_at', now)
  redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
  return {verdict, 0}
end
if state == 'accepted' then return claim('claimed') end
if state ~= 'submitting' then redis.call('ZREM', KEYS[2], ARGV[1]); return {state, 0} end
local until_ = tonumber(redis.call('HGET', KEYS[1], 'claimed_until') or '0')
if until_ > now then return {'busy', until_ - now} end
local sending = redis.call('HGET', KEYS[1], 'sending_at')
if not sending then return claim('claimed') end
-- The previous holder sent (or was about to send) a create and never recorded its answer.
local since = tonumber(redis.call('HGET', KEYS[1], 'unknown_since') or '0')
if since == 0 then
  since = now
  redis.call('HSET', KEYS[1], 'unknown_since', now, 'last_error', 'create outcome unknown (worker lost)')
  redis.call('HINCRBY', KEYS[1], 'unknown_outcomes', 1)
end
local due = since + tonumber(ARGV[4])
if due > now then
  redis.call('ZADD', KEYS[2], due, ARGV[1])
  return {'unknown', due - now}
end
redis.call('HDEL', KEYS[1], 'sending_at', 'unknown_since')
redis.call('HINCRBY', KEYS[1], 'resubmitted_after_unknown', 1)
return claim('resubmit')
"""

_MARK_SENDING = _NOW + """
-- KEYS: 1 job, 2 due_submit   ARGV: 1 claim_token, 2 job_id, 3 send_lease_ms
-- Records that a create is about to be sent (its outcome is unknown until recorded) and extends
-- the claim to cover the request.
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[1] then return 0 end
local lease = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'sending_at', now, 'updated_at', now, 'claimed_until', now + lease)
redis.call('ZADD', KEYS[2], now + lease, ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
"""

_DEFER = _NOW + """
-- KEYS: 1 job, 2 due_submit
-- ARGV: 1 job_id, 2 claim_token, 3 delay_ms, 4 reason, 5 error ('' = none), 6 count_error (0/1),
--       7 keep_sending (0/1: the create's outcome is unknown, remember it was sent)
-- Gives back a claim: the job waits in due_submit for delay_ms.  Returns 1, or 0 if the claim was lost.
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'wait_reason', ARGV[4], 'updated_at', now)
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], 'claimed_until', 0)
  if not redis.call('HGET', KEYS[1], 'unknown_since') then
    redis.call('HSET', KEYS[1], 'unknown_since', now)
    redis.call('HINCRBY', KEYS[1], 'unknown_outcomes', 1)
  end
else
  redis.call('HSET', KEYS[1], 'state', 'accepted')
  redis.call('HDEL', KEYS[1], 'claim', 'claimed_until', 'sending_at')
end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[5]) end
if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[1], 'errors', 1) end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""

_RECORD_TASK = _NOW + """
-- KEYS: 1 job, 2 due_submit, 3 due_check, 4 task_map
-- ARGV: 1 job_id, 2 task_id, 3 first_check_ms, 4 timeout_ms, 5 source ('create' | 'callback' | 'poll')
-- Records an upstream taskId for the job.  Returns:
--   'recorded'  first task of the job (state becomes submitted; deadline starts);
--   'known'     this taskId was already recorded;
--   'duplicate' the job already had another task: this one is an extra (billed) upstream task;
--   'missing'   no such job.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
local tids = redis.call('HGET', KEYS[1], 'task_ids') or ''
if string.find(' ' .. tids .. ' ', ' ' .. ARGV[2] .. ' ', 1, true) then return 'known' end
redis.call('HSET', KEYS[1], 'task_ids', (tids == '' and ARGV[2]) or (tids .. ' ' .. ARGV[2]))
redis.call('SET', KEYS[4], ARGV[1], 'EX', 30 * 86400)
if state == 'accepted' or state == 'submitting' then
  redis.call('HSET', KEYS[1], 'state', 'submitted', 'task_id', ARGV[2], 'submitted_at', now,
             'deadline', now + tonumber(ARGV[4]), 'updated_at', now, 'task_source', ARGV[5])
  redis.call('HDEL', KEYS[1], 'claim', 'claimed_until', 'sending_at', 'unknown_since', 'wait_reason')
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], now + math.min(tonumber(ARGV[3]), tonumber(ARGV[4])), ARGV[1])
  return 'recorded'
end
redis.call('HINCRBY', KEYS[1], 'duplicates', 1)
return 'duplicate'
"""

_FINISH = _NOW + """
-- KEYS: 1 job, 2 due_submit, 3 due_check
-- ARGV: 1 job_id, 2 final_state, 3 outcome_json, 4 error ('' = none)
-- Moves the job to a terminal state exactly once.  Returns 1 if this call did it, 0 if it already was.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'succeeded' or state == 'failed' or state == 'timed_out' or state == 'rejected' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'outcome', ARGV[3], 'finished_at', now, 'updated_at', now)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[4]) end
redis.call('HDEL', KEYS[1], 'claim', 'claimed_until', 'sending_at', 'wait_reason')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

_RECORD_CALLBACK = _NOW + """
-- KEYS: 1 job   ARGV: 1 outcome_json
-- Counts a delivered callback and, while the job is unfinished, keeps its body (the latest one).
-- Returns {state, count}.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing', 0} end
local n = redis.call('HINCRBY', KEYS[1], 'callbacks', 1)
if state ~= 'succeeded' and state ~= 'failed' and state ~= 'timed_out' and state ~= 'rejected' then
  redis.call('HSET', KEYS[1], 'callback', ARGV[1], 'callback_at', now, 'updated_at', now)
end
return {state, n}
"""

_CLAIM_DUE = _NOW + """
-- KEYS: 1 due set   ARGV: 1 horizon_ms, 2 lease_ms, 3 limit
-- Takes members due within horizon_ms and pushes each one's score lease_ms past its due time, so a
-- second sweep does not take them again unless the first taker died.  Returns {member, due_in_ms, ...}.
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now + tonumber(ARGV[1]), 'WITHSCORES', 'LIMIT', 0,
                         tonumber(ARGV[3]))
local out = {}
for i = 1, #items, 2 do
  local due = tonumber(items[i + 1])
  redis.call('ZADD', KEYS[1], math.max(due, now) + tonumber(ARGV[2]), items[i])
  out[#out + 1] = items[i]
  out[#out + 1] = tostring(math.max(0, due - now))
end
return out
"""

_RESCHEDULE = _NOW + """
-- KEYS: 1 due set, 2 job   ARGV: 1 job_id, 2 delay_ms, 3 expected_state
-- Puts a job back in a due set if it is still in expected_state.
if redis.call('HGET', KEYS[2], 'state') ~= ARGV[3] then redis.call('ZREM', KEYS[1], ARGV[1]); return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""

_WAKE = _NOW + """
-- KEYS: 1 due set.  Moves every member due later than now to now.  Returns how many moved.
local later = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
for _, m in ipairs(later) do redis.call('ZADD', KEYS[1], now, m) end
return #later
"""


def _decode(value):
    return value.decode() if isinstance(value, bytes) else value


class JobStore:
    """Job records and their transitions.  ``redis`` is a ``redis.Redis`` client."""

    def __init__(self, redis, prefix: str):
        self.redis = redis
        self.keys = Keys(prefix)
        self._scripts: dict[str, Any] = {}

    def _script(self, source: str):
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.redis.register_script(source)
        return script

    # -- reading ---------------------------------------------------------------------------
    def get(self, job_id: str) -> dict | None:
        """The job record as a dict of str (numbers stay strings), or None."""
        raw = self.redis.hgetall(self.keys.job(job_id))
        if not raw:
            return None
        return {_decode(k): _decode(v) for k, v in raw.items()}

    def waiters(self, job_id: str) -> dict[str, dict]:
        raw = self.redis.hgetall(self.keys.waiters(job_id))
        return {_decode(k): json.loads(v) for k, v in raw.items()}

    def waiter_done(self, job_id: str, waiter_id: str) -> bool:
        return bool(self.redis.sismember(self.keys.waiters_done(job_id), waiter_id))

    def job_for_task(self, task_id: str) -> str | None:
        return _decode(self.redis.get(self.keys.task(task_id)))

    # -- transitions -----------------------------------------------------------------------
    def accept(self, job_id: str, *, model: str, input: dict, timeout: float, waiter_id: str,
               waiter: dict, first_claim_ms: int) -> tuple[str, bool, bool]:
        """Create the job if new and attach a waiter.  Returns (state, created, waiter_added)."""
        k = self.keys
        state, created, added = self._script(_ACCEPT)(
            keys=[k.job(job_id), k.waiters(job_id), k.due_submit],
            args=[job_id, model, json.dumps(input, sort_keys=True), timeout, waiter_id,
                  json.dumps(waiter), first_claim_ms])
        return _decode(state), bool(created), bool(added)

    def reject(self, job_id: str, *, model: str, error: str) -> bool:
        return bool(self._script(_REJECT)(keys=[self.keys.job(job_id)], args=[job_id, model, error]))

    def claim_submit(self, job_id: str, *, lease_ms: int, unknown_grace_ms: int) -> tuple[str, int, str]:
        """Claim the job for a createTask attempt.  Returns (verdict, wait_ms, claim_token)."""
        token = uuid.uuid4().hex
        verdict, wait = self._script(_CLAIM_SUBMIT)(
            keys=[self.keys.job(job_id), self.keys.due_submit],
            args=[job_id, lease_ms, token, unknown_grace_ms])
        return _decode(verdict), int(wait), token

    def mark_sending(self, job_id: str, token: str, *, send_lease_ms: int) -> int:
        """Record that a create is about to go out and extend the claim over the request by
        ``send_lease_ms``; returns the attempt number (0 = claim lost)."""
        return int(self._script(_MARK_SENDING)(keys=[self.keys.job(job_id), self.keys.due_submit],
                                               args=[token, job_id, send_lease_ms]))

    def defer(self, job_id: str, token: str, *, delay_ms: int, reason: str, error: str = "",
              count_error: bool = False, outcome_unknown: bool = False) -> bool:
        """Give back a claim and wait ``delay_ms`` in the submit queue."""
        return bool(self._script(_DEFER)(
            keys=[self.keys.job(job_id), self.keys.due_submit],
            args=[job_id, token, max(0, int(delay_ms)), reason, error, int(count_error), int(outcome_unknown)]))

    def record_task(self, job_id: str, task_id: str, *, first_check_ms: int, timeout_ms: int,
                    source: str) -> str:
        k = self.keys
        return _decode(self._script(_RECORD_TASK)(
            keys=[k.job(job_id), k.due_submit, k.due_check, k.task(task_id)],
            args=[job_id, task_id, first_check_ms, timeout_ms, source]))

    def finish(self, job_id: str, state: str, outcome: dict, *, error: str = "") -> bool:
        """Move to a terminal state; True for the one call that did it."""
        assert state in TERMINAL, state
        k = self.keys
        return self._script(_FINISH)(
            keys=[k.job(job_id), k.due_submit, k.due_check],
            args=[job_id, state, json.dumps(outcome), error]) == 1

    def record_callback(self, job_id: str, outcome: dict) -> tuple[str, int]:
        """Store a delivered callback's outcome (ignored once the job is terminal). Returns (state, deliveries)."""
        state, n = self._script(_RECORD_CALLBACK)(keys=[self.keys.job(job_id)], args=[json.dumps(outcome)])
        return _decode(state), int(n)

    def claim_waiter(self, job_id: str, waiter_id: str) -> bool:
        """The exactly-once claim on finishing one waiter's chain."""
        return self.redis.sadd(self.keys.waiters_done(job_id), waiter_id) == 1

    def claim_due(self, which: str, *, horizon_ms: int, lease_ms: int, limit: int = 500) -> list[tuple[str, int]]:
        """Take due members of ``due:submit`` or ``due:check``: [(job_id, due_in_ms)]."""
        key = self.keys.due_submit if which == "submit" else self.keys.due_check
        flat = self._script(_CLAIM_DUE)(keys=[key], args=[horizon_ms, lease_ms, limit])
        return [(_decode(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def wake_submits(self) -> int:
        """Make every job waiting for submission due now (after a pause was lifted)."""
        return int(self._script(_WAKE)(keys=[self.keys.due_submit], args=[]))

    def reschedule_check(self, job_id: str, delay_ms: int) -> bool:
        return bool(self._script(_RESCHEDULE)(
            keys=[self.keys.due_check, self.keys.job(job_id)], args=[job_id, max(0, int(delay_ms)), "submitted"]))

    # -- metrics ---------------------------------------------------------------------------
    def incr(self, counter: str, amount: int = 1) -> None:
        self.redis.hincrby(self.keys.metrics, counter, amount)

    def counters(self) -> dict[str, int]:
        return {_decode(k): int(v) for k, v in self.redis.hgetall(self.keys.metrics).items()}
