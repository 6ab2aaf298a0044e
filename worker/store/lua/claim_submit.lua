-- KEYS: 1 job, 2 due_submit, 3 timeline
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
  event(KEYS[3], 'create_outcome_unknown', 'the worker sending the create was lost')
end
local due = since + tonumber(ARGV[4])
if due > now then
  redis.call('ZADD', KEYS[2], due, ARGV[1])
  return {'unknown', due - now}
end
redis.call('HDEL', KEYS[1], 'sending_at', 'unknown_since')
redis.call('HINCRBY', KEYS[1], 'resubmitted_after_unknown', 1)
event(KEYS[3], 'resubmit', 'no callback revealed the earlier create: sending again (a duplicate task may exist)')
return claim('resubmit')
