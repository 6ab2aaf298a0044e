-- KEYS: 1 job, 2 waiters, 3 due_submit
-- ARGV: 1 job_id, 2 model, 3 input_json, 4 timeout_s, 5 waiter_id, 6 waiter_json, 7 first_claim_ms,
--       8 tenant, 9 priority (0-9)
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
             'duplicates', 0, 'callbacks', 0, 'tenant', ARGV[8], 'priority', ARGV[9])
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[7]), ARGV[1])
  created = 1
end
local added = redis.call('HSETNX', KEYS[2], ARGV[5], ARGV[6])
return {redis.call('HGET', KEYS[1], 'state'), created, added}
