-- KEYS: 1 job, 2 due_submit, 3 timeline
-- ARGV: 1 job_id, 2 claim_token, 3 delay_ms, 4 reason, 5 error ('' = none), 6 count_error (0/1),
--       7 keep_sending (0/1: the create's outcome is unknown, remember it was sent)
-- Gives back a claim: the job waits in due_submit for delay_ms.  Returns 1, or 0 if the claim was lost.
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'wait_reason', ARGV[4], 'updated_at', now)
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], 'claimed_until', 0)
  if not redis.call('HGET', KEYS[1], 'unknown_since') then
    redis.call('HSET', KEYS[1], 'unknown_since', now)
    redis.call('HINCRBY', KEYS[1], 'unknown_outcomes', 1)
  end
else
  redis.call('HSET', KEYS[1], 'state', 'accepted')
  redis.call('HDEL', KEYS[1], 'claim', 'claimed_until', 'sending_at')
end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[5]) end
if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[1], 'errors', 1) end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
local names = {['429'] = 'rate_limited', retry = 'retry', unknown = 'create_outcome_unknown'}
local detail = ARGV[4] .. ', ' .. ARGV[3] .. ' ms'
if ARGV[5] ~= '' then detail = detail .. ': ' .. ARGV[5] end
event(KEYS[3], names[ARGV[4]] or 'wait', detail)
return 1
