-- KEYS: 1 jobs index   ARGV: 1 older_than_ms, 2 job key prefix (the record's key without the job id), 3 limit
-- Removes index entries created more than older_than_ms ago whose job record has expired (a job still
-- there, re-run or not, keeps its entry).  Returns how many it removed.
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[3]))
local removed = 0
for _, id in ipairs(old) do
  if redis.call('EXISTS', ARGV[2] .. id) == 0 then
    redis.call('ZREM', KEYS[1], id)
    removed = removed + 1
  end
end
return removed
