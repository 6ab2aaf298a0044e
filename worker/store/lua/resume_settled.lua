-- KEYS: 1 waiters, 2 waiters_done, 3 due_resume   ARGV: 1 job_id
-- Takes the job out of due_resume once every waiter it has is marked done.  Returns 1 if it did.
for _, w in ipairs(redis.call('HKEYS', KEYS[1])) do
  if redis.call('SISMEMBER', KEYS[2], w) == 0 then return 0 end
end
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
