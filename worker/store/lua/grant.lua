-- KEYS: 1 rate log, 2 cooldown, 3 paused, 4 inflight, 5 due_submit
-- ARGV: 1 window_ms, 2 limit, 3 margin_ms, 4 max_in_flight, 5 slot_lease_ms, 6 account key base,
--       7 job key prefix, 8 max grants, 9 member suffix
-- The pump's call: grants every create that may go out now, fairly across the tenants' ready
-- queues (fair.lua), and makes each granted job due now in due_submit (with its log entry in the
-- job's 'grant' field), where a worker's pump hands it out under a lease.
-- Returns {granted count, reason it stopped, redis commands run, job_id...}.
local LOG, COOLDOWN, PAUSED, INFLIGHT = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local WINDOW, LIMIT, MARGIN = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local MAX_IN_FLIGHT, LEASE, A, JOB, SELF = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7], ''
-- include: fair
if redis.call('ZCARD', TENANTS) == 0 and redis.call('ZCARD', BLOCKED) == 0 then return {0, 'idle', 2} end
local granted, reason = grant_now(tonumber(ARGV[8]), ARGV[9])
local out = {#granted, reason, 0}
for _, g in ipairs(granted) do
  call('HSET', JOB .. g[1], 'grant', g[2], 'wait_reason', 'granted')
  call('ZADD', KEYS[5], now, g[1])
  out[#out + 1] = g[1]
end
out[3] = OPS + 2
return out
