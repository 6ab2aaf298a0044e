-- KEYS: 1 job, 2 due_submit, 3 timeline   ARGV: 1 claim_token, 2 job_id, 3 send_lease_ms
-- Records that a create is about to be sent (its outcome is unknown until recorded) and extends
-- the claim to cover the request.
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[1] then return 0 end
local lease = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'sending_at', now, 'updated_at', now, 'claimed_until', now + lease)
redis.call('ZADD', KEYS[2], now + lease, ARGV[2])
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
event(KEYS[3], 'create_sent', 'attempt ' .. n)
return n
