-- KEYS: 1 due set, 2 job, 3 timeline   ARGV: 1 job_id, 2 delay_ms, 3 expected_state, 4 event ('' = none), 5 detail
-- Puts a job back in a due set if it is still in expected_state.
if redis.call('HGET', KEYS[2], 'state') ~= ARGV[3] then redis.call('ZREM', KEYS[1], ARGV[1]); return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if ARGV[4] ~= '' then event(KEYS[3], ARGV[4], ARGV[5] .. ' (next check in ' .. ARGV[2] .. ' ms)') end
return 1
