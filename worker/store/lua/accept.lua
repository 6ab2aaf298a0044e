-- KEYS: 1 job, 2 waiters, 3 due_submit, 4 jobs index, 5 timeline, 6 due_check, 7 due_resume
-- ARGV: 1 job_id, 2 model, 3 input_json (canonical: sorted keys), 4 timeout_s, 5 waiter_id, 6 waiter_json,
--       7 first_claim_ms, 8 retry_failed (0/1), 9 resume_after_ms, 10 tenant, 11 priority (0-9)
-- Creates the job if absent (state accepted, due for submission after first_claim_ms: the caller
-- tries at once and the lease covers its death), then adds the waiter if absent.  A job id already
-- used with another model or input is a conflict (nothing changes).  With retry_failed, a failed,
-- timed-out or cancelled job is re-run as its next generation.
-- A waiter added to a finished job expires with it, and the job waits in due_resume so the sweep
-- resumes that waiter if its caller dies before doing it.
-- Returns {state, created (0/1), waiter_added (0/1)}; state 'conflict' for a different input.
local created = 0
if redis.call('HGET', KEYS[1], 'state') == 'rejected' then
  -- an earlier call with this job id had invalid input and sent nothing upstream: start afresh
  redis.call('DEL', KEYS[1], KEYS[5])
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'job_id', ARGV[1], 'state', 'accepted', 'model', ARGV[2], 'input', ARGV[3],
             'timeout', ARGV[4], 'created_at', now, 'updated_at', now, 'attempts', 0, 'errors', 0,
             'duplicates', 0, 'callbacks', 0, 'generation', 1, 'tenant', ARGV[10], 'priority', ARGV[11])
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[7]), ARGV[1])
  redis.call('ZADD', KEYS[4], now, ARGV[1])
  event(KEYS[5], 'accepted', '')
  created = 1
else
  local stored = redis.call('HMGET', KEYS[1], 'model', 'input', 'state')
  if stored[1] ~= ARGV[2] or stored[2] ~= ARGV[3] then return {'conflict', 0, 0} end
  if ARGV[8] == '1' and RERUNNABLE[stored[3]] then
    restart(KEYS[1], KEYS[3], KEYS[6], KEYS[5], ARGV[1], 'retry_failed',
            'a caller asked to re-run the ' .. stored[3] .. ' job', '')
  end
end
local added = redis.call('HSETNX', KEYS[2], ARGV[5], ARGV[6])
if added == 1 and created == 0 then event(KEYS[5], 'caller_added', ARGV[5]) end
local state = redis.call('HGET', KEYS[1], 'state')
if added == 1 and FINISHED[state] then
  local ttl = tonumber(redis.call('PTTL', KEYS[1]))
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
  redis.call('ZADD', KEYS[7], 'NX', now + tonumber(ARGV[9]), ARGV[1])
end
return {state, created, added}
