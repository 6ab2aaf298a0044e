-- Functions shared by every script (part of the prologue; not a script of its own).

-- Appends {"t": now, "event": name, "detail": detail} to a job's timeline list, keeping the last
-- TIMELINE_CAP events.
local function event(timeline, name, detail)
  redis.call('RPUSH', timeline, '{"t":' .. string.format('%.0f', now) .. ',"event":' .. cjson.encode(name) ..
             ',"detail":' .. cjson.encode(detail or '') .. '}')
  redis.call('LTRIM', timeline, -TIMELINE_CAP, -1)
end

-- The keys of a job besides its record: worker.store.keys names each one as this suffix of the
-- record's key (a unit test holds them to it).
local JOB_PARTS = {':waiters', ':done', ':leases', ':timeline'}

-- A finished job's keys expire ttl_ms from now (KIE_JOB_RETENTION).
local function expire_job(job, ttl_ms)
  redis.call('PEXPIRE', job, ttl_ms)
  for _, part in ipairs(JOB_PARTS) do redis.call('PEXPIRE', job .. part, ttl_ms) end
end

-- A job that runs again is live state: its keys stop expiring.
local function persist_job(job)
  redis.call('PERSIST', job)
  for _, part in ipairs(JOB_PARTS) do redis.call('PERSIST', job .. part) end
end

-- Puts a job back to 'accepted' as its next generation (a new upstream task will be created):
-- the generation that ends is appended to the record's 'history' (JSON list), its upstream tasks
-- become 'retired' (their late callbacks and polls are ignored), and the job is due for
-- submission now.  'regenerations' counts the automatic re-generations since the last deliberate
-- re-run (reason 'regenerate' adds one, any other reason starts again at 0).  outcome_json = '' takes
-- the stored outcome.  Returns the new generation.
local function restart(job, due_submit, due_check, timeline, job_id, reason, detail, outcome_json)
  local f = redis.call('HMGET', job, 'state', 'task_id', 'outcome', 'finished_at', 'generation', 'task_ids',
                       'history', 'last_error')
  local gen = tonumber(f[5] or '1') or 1
  local outcome = outcome_json
  if outcome == '' then outcome = f[3] or '{}' end
  local ended = f[1]
  if not RERUNNABLE[ended] then ended = 'failed' end   -- a failing task, re-generated before the job finished
  local entry = cjson.encode({generation = gen, state = ended, task_id = f[2] or '', error = f[8] or '',
                              ended_at = now, outcome = cjson.decode(outcome)})
  local hist = f[7]
  if not hist or hist == '' or hist == '[]' then hist = '[' .. entry .. ']'
  else hist = string.sub(hist, 1, -2) .. ',' .. entry .. ']' end
  redis.call('HSET', job, 'state', 'accepted', 'generation', gen + 1, 'errors', 0, 'updated_at', now,
             'history', hist, 'retired_task_ids', f[6] or '')
  redis.call('HDEL', job, 'task_id', 'submitted_at', 'deadline', 'outcome', 'finished_at', 'callback',
             'callback_at', 'claim', 'claimed_until', 'sending_at', 'unknown_since', 'wait_reason', 'task_source',
             'last_error', 'grant')
  if reason == 'regenerate' then redis.call('HINCRBY', job, 'regenerations', 1)
  else redis.call('HSET', job, 'regenerations', 0) end   -- a deliberate re-run gets the whole budget again
  redis.call('ZREM', due_check, job_id)
  redis.call('ZADD', due_submit, now, job_id)
  persist_job(job)
  event(timeline, reason, detail)
  return gen + 1
end
