-- KEYS: 1 jobs index   ARGV: 1 older_than_ms, 2 job key prefix (the record's key without the job id), 3 limit,
--                            4 offset (how many of the entries older than older_than_ms to pass over first)
-- Looks at up to `limit` index entries created more than older_than_ms ago, oldest first, after the first
-- `offset` of them (those an earlier batch kept), and removes those whose job record has expired (a job still
-- there, re-run or not, keeps its entry).  Returns {how many it removed, how many it looked at}.
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]),
                       'LIMIT', tonumber(ARGV[4]), tonumber(ARGV[3]))
local removed = 0
for _, id in ipairs(old) do
  if redis.call('EXISTS', ARGV[2] .. id) == 0 then
    redis.call('ZREM', KEYS[1], id)
    removed = removed + 1
  end
end
return {removed, #old}
