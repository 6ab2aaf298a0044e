-- KEYS: 1 pause key   ARGV: 1 ms
-- Sets or extends (never shortens) a pause.
local p = redis.call('PTTL', KEYS[1])
if p < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', tonumber(ARGV[1])) end
return 1
