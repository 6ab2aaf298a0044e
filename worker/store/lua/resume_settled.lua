-- KEYS: 1 waiters, 2 waiters_done, 3 due_resume, 4 job   ARGV: 1 job_id
-- Takes the job out of due_resume once every waiter it has is marked done, or when the job is no longer
-- finished (gone after its retention, or running again).  Returns 1 if it did.
if not FINISHED[redis.call('HGET', KEYS[4], 'state') or ''] then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 1
end
for _, w in ipairs(redis.call('HKEYS', KEYS[1])) do
  if redis.call('SISMEMBER', KEYS[2], w) == 0 then return 0 end
end
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
