-- KEYS: 1 job, 2 due_submit, 3 due_check, 4 due_resume, 5 waiters, 6 waiters_done, 7 waiter_leases,
--       8.. the task index entries of the job's upstream tasks
-- ARGV: 1 job_id, 2 final_state, 3 outcome_json, 4 error ('' = none), 5 retention_ms, 6 resume_after_ms
-- Moves the job to a terminal state exactly once.  The job's keys expire retention_ms later, and the
-- job waits in due_resume (resume_after_ms) so the sweep resumes its waiters if the finisher dies.
-- Returns 1 if this call did it, 0 if it already was.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if TERMINAL[state] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'outcome', ARGV[3], 'finished_at', now, 'updated_at', now)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[4]) end
redis.call('HDEL', KEYS[1], 'claim', 'claimed_until', 'sending_at', 'wait_reason')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[6]), ARGV[1])
local retention = tonumber(ARGV[5])
redis.call('PEXPIRE', KEYS[1], retention)
for i = 5, #KEYS do redis.call('PEXPIRE', KEYS[i], retention) end
return 1
