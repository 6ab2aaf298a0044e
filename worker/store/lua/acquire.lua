-- KEYS: 1 rate log, 2 cooldown, 3 paused, 4 inflight, 5 reservations
-- ARGV: 1 window_ms, 2 limit, 3 member, 4 max_in_flight, 5 slot_lease_ms, 6 job_id, 7 margin_ms
-- The log holds past creates and future reservations (member -> ms).  A job that cannot go now is
-- given the earliest slot that keeps every window within the limit (appended after every other
-- reservation: first come, first served) and told to come back then; coming back it redeems it.
-- Returns {allowed (0/1), wait_ms, reason, log member of the create (when allowed)}.
local p = redis.call('PTTL', KEYS[3])
if p > 0 then return {0, p, 'paused'} end
local c = redis.call('PTTL', KEYS[2])
if c > 0 then return {0, c, 'cooldown'} end
local window, limit, margin = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local held = redis.call('ZSCORE', KEYS[4], ARGV[6])
if not held and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[4]) then
  local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  return {0, math.min(1000, math.max(50, tonumber(first[2]) - now)), 'in_flight'}
end
-- entries this old can no longer bind any decision taken from now on
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window - margin - 1)
local function take(member, at)
  redis.call('PEXPIRE', KEYS[1], math.max(at - now, 0) + window * 2 + 60000)
  redis.call('PEXPIRE', KEYS[5], math.max(at - now, 0) + window * 2 + 60000)
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]), ARGV[6])
  return {1, 0, 'ok', member}
end
local mine = redis.call('HGET', KEYS[5], ARGV[6])
if mine then
  local at = redis.call('ZSCORE', KEYS[1], mine)
  if at then
    at = tonumber(at)
    if at > now then return {0, at - now, 'reserved'} end
    -- Redeem at `now` (on time or late) if the window ending now still has room: every grant is
    -- checked against what was really sent, so a late job, or a create confirmed late, can never
    -- crowd a window; it only slips the slots planned after it.  (The margin was spent when the
    -- slot was planned; confirmed entries sit at their answer time, after their real arrival.)
    local others = {}
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - window), now)) do
      if m ~= mine then others[#others + 1] = m end
    end
    if #others < limit then
      redis.call('ZADD', KEYS[1], now, mine)
      redis.call('HDEL', KEYS[5], ARGV[6])
      return take(mine, now)
    end
    -- crowded: slip this reservation to when the window ending then has room (it keeps its place)
    local bind = tonumber(redis.call('ZSCORE', KEYS[1], others[#others - limit + 1]))
    local slip = math.max(now + 1, bind + window + 1)
    redis.call('ZADD', KEYS[1], slip, mine)
    return {0, slip - now, 'reserved'}
  end
  redis.call('HDEL', KEYS[5], ARGV[6])
end
local n = redis.call('ZCARD', KEYS[1])
local at = now
if n >= limit then
  local bind = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  at = math.max(now, tonumber(bind[2]) + window + margin)
end
redis.call('ZADD', KEYS[1], at, ARGV[3])
if at <= now then return take(ARGV[3], at) end
redis.call('HSET', KEYS[5], ARGV[6], ARGV[3])
redis.call('PEXPIRE', KEYS[1], at - now + window * 2 + 60000)
redis.call('PEXPIRE', KEYS[5], at - now + window * 2 + 60000)
return {0, at - now, 'rate'}
