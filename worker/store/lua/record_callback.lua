-- KEYS: 1 job, 2 timeline   ARGV: 1 outcome_json, 2 upstream state and taskId (for the timeline)
-- Counts a delivered callback and, while the job is unfinished, keeps its body (the latest one).
-- Returns {state, count}.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing', 0} end
local n = redis.call('HINCRBY', KEYS[1], 'callbacks', 1)
if not TERMINAL[state] then
  redis.call('HSET', KEYS[1], 'callback', ARGV[1], 'callback_at', now, 'updated_at', now)
end
if n == 1 then event(KEYS[2], 'callback_received', ARGV[2])
else event(KEYS[2], 'duplicate_callback', ARGV[2] .. ' (delivery ' .. n .. ', job ' .. state .. ')') end
return {state, n}
