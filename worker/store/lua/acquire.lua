-- KEYS: 1 rate log, 2 cooldown, 3 paused, 4 inflight, 5 job, 6 due_submit
-- ARGV: 1 window_ms, 2 limit, 3 margin_ms, 4 max_in_flight, 5 slot_lease_ms, 6 account key base,
--       7 job key prefix, 8 job_id, 9 claim token, 10 tenant, 11 priority, 12 weight, 13 tenant cap
--       (0 = none), 14 member suffix
-- Asked by the worker holding the job's submit claim: may its create go out now?
-- * The job holds a grant (the pump's grant.lua chose it): redeemed now if the window ending now
--   still has room counting what was really sent; else it keeps the grant and waits ('reserved').
--   A grant found under a pause or cool-down is given back and the job queued again.
-- * No grant: the job joins its tenant's ready queue (at the place it had, if it was there
--   before), and the fair grant runs at once: if this job is chosen it goes now; otherwise the
--   claim is given back (state accepted, out of due_submit) and the job waits in the queue, in
--   Redis, until the pump grants it.
-- Returns {allowed (0/1), wait_ms, reason, log member (when allowed)}; reasons when not allowed:
-- 'reserved' (the caller defers the job wait_ms; it keeps its grant), or the reason it was queued
-- ('rate', 'in_flight', 'cooldown', 'paused', 'fair', 'tenant_cap': nothing left for the caller).
local LOG, COOLDOWN, PAUSED, INFLIGHT = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local WINDOW, LIMIT, MARGIN = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local MAX_IN_FLIGHT, LEASE, A, JOB, SELF = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]
-- include: fair
local job_id, tenant = ARGV[8], ARGV[10]
local grant = call('HGET', KEYS[5], 'grant')
if grant then
  local at = call('ZSCORE', LOG, grant)
  if at and call('PTTL', PAUSED) <= 0 and call('PTTL', COOLDOWN) <= 0 then
    local others = {}
    for _, m in ipairs(call('ZRANGEBYSCORE', LOG, '(' .. (now - WINDOW), '+inf')) do
      if m ~= grant then others[#others + 1] = m end
    end
    if #others < LIMIT then
      call('ZADD', LOG, 'GT', now, grant)
      call('HDEL', KEYS[5], 'grant')
      call('ZADD', INFLIGHT, now + LEASE, job_id)
      call('ZADD', A .. ':tin:' .. tenant, now + LEASE, job_id)
      return {1, 0, 'ok', grant}
    end
    local bind = tonumber(call('ZSCORE', LOG, others[#others - LIMIT + 1]))
    return {0, math.max(1, bind + WINDOW + 1 - now), 'reserved'}
  end
  -- the grant lapsed, or a pause began: give it back and queue again
  if at then call('ZREM', LOG, grant) end
  call('HDEL', KEYS[5], 'grant')
  release(job_id, tenant)
end
enqueue(job_id, tenant, ARGV[11], ARGV[12], ARGV[13])
local granted, reason = grant_now(LIMIT, ARGV[14])
local mine = nil
for _, g in ipairs(granted) do
  if g[1] == job_id then
    mine = g[2]
  else
    call('HSET', JOB .. g[1], 'grant', g[2], 'wait_reason', 'granted')
    call('ZADD', KEYS[6], now, g[1])
  end
end
if mine then return {1, 0, 'ok', mine} end
if reason == 'idle' then reason = (call('ZSCORE', BLOCKED, tenant) and 'tenant_cap') or 'fair' end
if call('HGET', KEYS[5], 'claim') == ARGV[9] then
  call('HSET', KEYS[5], 'state', 'accepted', 'wait_reason', reason, 'updated_at', now)
  call('HDEL', KEYS[5], 'claim', 'claimed_until', 'sending_at')
  call('ZREM', KEYS[6], job_id)
end
return {0, 0, reason}
