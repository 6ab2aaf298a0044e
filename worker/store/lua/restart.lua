-- KEYS: 1 job, 2 due_submit, 3 due_check, 4 timeline, 5 waiters, 6 waiters_done
-- ARGV: 1 job_id, 2 mode ('finished' | 'failing'), 3 expected, 4 event, 5 detail, 6 outcome_json ('' = stored),
--       7 waiter swap JSON ('' = none): {"remove": [waiter ids], "add": {waiter id: parked chain JSON}}
-- Runs a job again as its next generation (see restart() in the prologue), if it is still where the
-- caller saw it: mode 'finished' expects a failed/timed-out/cancelled job of generation `expected`
-- (an operator's retry: the waiters whose chains failed are swapped for their re-runs); mode
-- 'failing' expects a submitted job whose current task is `expected` (an automatic re-generation
-- after a transient upstream failure, before the job is finished).
-- With a swap, every finished waiter must be one the caller re-runs (else 'changed': a chain failed after
-- the caller looked; it may look again).  Returns {new generation (0 = not restarted), state}.
local f = redis.call('HMGET', KEYS[1], 'state', 'generation', 'task_id')
local state = f[1]
if not state then return {0, 'missing'} end
if ARGV[2] == 'finished' then
  if not RERUNNABLE[state] or (f[2] or '1') ~= ARGV[3] then return {0, state} end
elseif state ~= 'submitted' or f[3] ~= ARGV[3] then
  return {0, state}
end
if ARGV[7] ~= '' then
  local swap = cjson.decode(ARGV[7])
  local removing = {}
  for _, id in ipairs(swap['remove']) do removing[id] = true end
  for _, id in ipairs(redis.call('HKEYS', KEYS[5])) do
    if not removing[id] and redis.call('SISMEMBER', KEYS[6], id) == 1 then return {0, 'changed'} end
  end
  for _, id in ipairs(swap['remove']) do redis.call('HDEL', KEYS[5], id) end
  for id, parked in pairs(swap['add']) do redis.call('HSET', KEYS[5], id, parked) end
end
local gen = restart(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[4], ARGV[5], ARGV[6])
return {gen, 'accepted'}
