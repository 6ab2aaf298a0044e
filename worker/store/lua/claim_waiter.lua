-- KEYS: 1 waiters_done, 2 waiter_leases, 3 due_resume
-- ARGV: 1 waiter_id, 2 lease_token, 3 lease_ms, 4 job_id
-- Leases the resumption of one waiter's chain: the holder publishes its next step, then marks it
-- done (mark_waiter_done).  A lease that expired undone may be taken again (its holder died between
-- the claim and the mark); the job stays in due_resume until the lease ends, so the sweep looks.
-- Returns {claimed (0/1), taken_over (0/1: an expired lease was replaced)}.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {0, 0} end
local lease = tonumber(ARGV[3])
local taken_over = 0
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  local deadline = tonumber(string.match(held, ':(%d+)$') or '0')
  if deadline > now then return {0, 0} end
  taken_over = 1
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. (now + lease))
redis.call('PEXPIRE', KEYS[2], lease * 10 + 86400000)
redis.call('ZADD', KEYS[3], 'GT', now + lease, ARGV[4])
return {1, taken_over}
