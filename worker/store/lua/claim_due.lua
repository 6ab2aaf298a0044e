-- KEYS: 1 due set   ARGV: 1 horizon_ms, 2 lease_ms, 3 limit
-- Takes members due within horizon_ms and pushes each one's score lease_ms past its due time, so a
-- second sweep does not take them again unless the first taker died.  Returns {member, due_in_ms, ...}.
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now + tonumber(ARGV[1]), 'WITHSCORES', 'LIMIT', 0,
                         tonumber(ARGV[3]))
local out = {}
for i = 1, #items, 2 do
  local due = tonumber(items[i + 1])
  redis.call('ZADD', KEYS[1], math.max(due, now) + tonumber(ARGV[2]), items[i])
  out[#out + 1] = items[i]
  out[#out + 1] = tostring(math.max(0, due - now))
end
return out
