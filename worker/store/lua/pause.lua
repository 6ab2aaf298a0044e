-- KEYS: 1 pause key   ARGV: 1 ms, 2 reason (optional)
-- Sets or extends (never shortens) a pause; the key's value is its reason.
local p = redis.call('PTTL', KEYS[1])
if p < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[2] or '1', 'PX', tonumber(ARGV[1])) end
return 1
