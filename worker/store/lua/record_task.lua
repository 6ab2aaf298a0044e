-- KEYS: 1 job, 2 due_submit, 3 due_check, 4 task_map, 5 timeline
-- ARGV: 1 job_id, 2 task_id, 3 first_check_ms, 4 timeout_ms, 5 source ('create' | 'callback' | 'poll'),
--       6 retention_ms
-- The task index entry lives as long as the job can: its timeout plus the retention, or a finished
-- job's remaining life.
-- Records an upstream taskId for the job.  Returns:
--   'recorded'  first task of the job (state becomes submitted; deadline starts);
--   'known'     this taskId was already recorded;
--   'duplicate' the job already had another task: this one is an extra (billed) upstream task;
--   'cancelled' the job was cancelled while its create was in flight (kept for the record);
--   'missing'   no such job.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
local tids = redis.call('HGET', KEYS[1], 'task_ids') or ''
if string.find(' ' .. tids .. ' ', ' ' .. ARGV[2] .. ' ', 1, true) then return 'known' end
redis.call('HSET', KEYS[1], 'task_ids', (tids == '' and ARGV[2]) or (tids .. ' ' .. ARGV[2]))
local life = tonumber(redis.call('PTTL', KEYS[1]))
if life < 0 then life = tonumber(ARGV[4]) + tonumber(ARGV[6]) end
redis.call('SET', KEYS[4], ARGV[1], 'PX', life)
if UNSUBMITTED[state] then
  redis.call('HSET', KEYS[1], 'state', 'submitted', 'task_id', ARGV[2], 'submitted_at', now,
             'deadline', now + tonumber(ARGV[4]), 'updated_at', now, 'task_source', ARGV[5])
  redis.call('HDEL', KEYS[1], 'claim', 'claimed_until', 'sending_at', 'unknown_since', 'wait_reason')
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], now + math.min(tonumber(ARGV[3]), tonumber(ARGV[4])), ARGV[1])
  event(KEYS[5], 'task_recorded', ARGV[2] .. ' (' .. ARGV[5] .. ')')
  return 'recorded'
end
if state == 'cancelled' and not redis.call('HGET', KEYS[1], 'task_id') then
  redis.call('HSET', KEYS[1], 'task_id', ARGV[2], 'updated_at', now, 'task_source', ARGV[5])
  event(KEYS[5], 'task_after_cancel', ARGV[2] .. ': its outcome is ignored (kie.ai may still bill it)')
  return 'cancelled'
end
event(KEYS[5], 'duplicate_task', ARGV[2] .. ' (' .. ARGV[5] .. ')')
redis.call('HINCRBY', KEYS[1], 'duplicates', 1)
return 'duplicate'
