-- KEYS: 1 due set.  Moves every member due later than now to now.  Returns how many moved.
local later = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
for _, m in ipairs(later) do redis.call('ZADD', KEYS[1], now, m) end
return #later
