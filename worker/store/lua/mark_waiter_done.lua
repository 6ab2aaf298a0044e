-- KEYS: 1 waiters_done, 2 waiter_leases, 3 waiters, 4 job
-- ARGV: 1 waiter_id, 2 lease_token, 3 retention_ms, 4 drop_parked (0/1)
-- Marks a waiter's chain resumed (its next step is with the broker).  A resumed chain's parked copy
-- is deleted (drop_parked); a failed one is kept for the job's retention.  Every key touched expires
-- with the job (a live job's keys stay without expiry).  Returns 1, or 0 if the lease was no longer this caller's (another process took it
-- over after it expired: the chain may have been continued twice).
redis.call('SADD', KEYS[1], ARGV[1])
local held = redis.call('HGET', KEYS[2], ARGV[1]) or ''
redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[4] == '1' then redis.call('HDEL', KEYS[3], ARGV[1]) end
local ttl = tonumber(redis.call('PTTL', KEYS[4]))
if ttl == -2 then ttl = tonumber(ARGV[3]) end      -- the record is gone: keep nothing longer than the retention
if ttl > 0 then for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end end
if string.sub(held, 1, #ARGV[2] + 1) == ARGV[2] .. ':' then return 1 end
return 0
