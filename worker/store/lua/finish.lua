-- KEYS: 1 job, 2 due_submit, 3 due_check, 4 timeline, 5 due_resume, 6.. the task index entries of its tasks
-- ARGV: 1 job_id, 2 final_state, 3 outcome_json, 4 error ('' = none), 5 retention_ms, 6 resume_after_ms,
--       7 credits consumed ('' = unknown)
-- Moves the job to a terminal state exactly once.  Its keys expire retention_ms later, and it waits in
-- due_resume (resume_after_ms) so the sweep resumes its waiters if the finisher dies first.
-- Returns 1 if this call did it, 0 if it already was.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if TERMINAL[state] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'outcome', ARGV[3], 'finished_at', now, 'updated_at', now)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[4]) end
if ARGV[7] and ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'credits', ARGV[7]) end
redis.call('HDEL', KEYS[1], 'claim', 'claimed_until', 'sending_at', 'wait_reason', 'grant')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
event(KEYS[4], 'finished', ARGV[2] .. ((ARGV[4] ~= '' and (': ' .. ARGV[4])) or ''))
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[6]), ARGV[1])
expire_job(KEYS[1], tonumber(ARGV[5]))
for i = 6, #KEYS do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[5])) end
return 1
