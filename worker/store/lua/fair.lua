-- Library (included by acquire.lua, grant.lua, release.lua): weighted fair grants of one account.
-- Needs these locals, declared by the including script before its include line: A (the account's key base, e.g. kie:rl:<id>),
-- JOB (job key prefix, e.g. kie:job:), LOG, COOLDOWN, PAUSED, INFLIGHT (keys), WINDOW, LIMIT,
-- MARGIN, MAX_IN_FLIGHT, LEASE (ms).
--
-- Layout under A (see worker.store.keys):
--   :q:<tenant>   zset job_id -> (9 - priority) * 1e13 + arrival seq   (the tenant's ready queue)
--   :tenants      zset '<12-digit seq>:<tenant>' -> virtual start tag   (tenants with ready jobs)
--   :blocked      zset tenant -> earliest in-flight lease expiry        (ready, but at their cap)
--   :tin:<tenant> zset job_id -> lease expiry                           (the tenant's in-flight)
--   :sched hash   vt (virtual time), seq, tseq, and per tenant: w:<t> weight, cap:<t> cap,
--                 f:<t> finish tag of its last grant, m:<t> its member in :tenants, s:<t> its
--                 start tag while blocked
-- Start-time fair queuing: a tenant's next job has start tag S = max(vt, its last finish tag) and
-- finish tag S + 1/weight; the tenant with the least S goes next (ties: the one that became ready
-- first), and vt becomes that S.  A tenant that was idle starts at vt: no credit is banked, so an
-- idle tenant's share goes to the others (work conserving).  Every command below is O(log n) in
-- the waiting jobs and tenants; one grant costs a constant number of them.
local OPS = 0
local function call(...)
  OPS = OPS + 1
  return redis.call(...)
end
local function fmt(x) return string.format('%.17g', x) end
local SCHED, TENANTS, BLOCKED = A .. ':sched', A .. ':tenants', A .. ':blocked'

local function activate(tenant, start)
  local seq = call('HINCRBY', SCHED, 'tseq', 1)
  local member = string.format('%012d', seq) .. ':' .. tenant
  call('ZADD', TENANTS, fmt(start), member)
  call('HSET', SCHED, 'm:' .. tenant, member)
end

local function vt() return tonumber(call('HGET', SCHED, 'vt') or '0') end

-- Put a job in its tenant's ready queue (keeping the place it had, if it had one).
local function enqueue(job_id, tenant, priority, weight, cap)
  local jk = JOB .. job_id
  local score = call('HGET', jk, 'qscore')
  if not score then
    score = fmt((9 - tonumber(priority)) * 1e13 + call('HINCRBY', SCHED, 'seq', 1))
    call('HSET', jk, 'qscore', score)
  end
  call('HSET', SCHED, 'w:' .. tenant, weight, 'cap:' .. tenant, cap)
  call('ZADD', A .. ':q:' .. tenant, score, job_id)
  if not call('HGET', SCHED, 'm:' .. tenant) and not call('ZSCORE', BLOCKED, tenant) then
    activate(tenant, math.max(vt(), tonumber(call('HGET', SCHED, 'f:' .. tenant) or '0')))
  end
end

local function earliest(tin)
  local first = call('ZRANGE', tin, 0, 0, 'WITHSCORES')
  return first[2] or fmt(now)
end

-- A blocked tenant whose in-flight count fell below its cap becomes ready again.
local function maybe_unblock(tenant)
  if not call('ZSCORE', BLOCKED, tenant) then return end
  local tin = A .. ':tin:' .. tenant
  call('ZREMRANGEBYSCORE', tin, '-inf', now)
  local cap = tonumber(call('HGET', SCHED, 'cap:' .. tenant) or '0')
  if cap > 0 and call('ZCARD', tin) >= cap then
    call('ZADD', BLOCKED, earliest(tin), tenant)
    return
  end
  call('ZREM', BLOCKED, tenant)
  if call('ZCARD', A .. ':q:' .. tenant) > 0 then
    activate(tenant, math.max(vt(), tonumber(call('HGET', SCHED, 's:' .. tenant) or '0')))
  end
end

-- Free a job's in-flight slot (account and tenant).
local function release(job_id, tenant)
  call('ZREM', INFLIGHT, job_id)
  if tenant then
    call('ZREM', A .. ':tin:' .. tenant, job_id)
    maybe_unblock(tenant)
  end
end

-- Why nothing (more) may be granted now, or nil.
local function blocked_reason()
  if call('PTTL', PAUSED) > 0 then return 'paused' end
  if call('PTTL', COOLDOWN) > 0 then return 'cooldown' end
  if call('ZCOUNT', LOG, '(' .. (now - WINDOW - MARGIN), '+inf') >= LIMIT then return 'rate' end
  if call('ZCARD', INFLIGHT) >= MAX_IN_FLIGHT then return 'in_flight' end
  return nil
end

-- Grant up to maxn creates now, fairly.  Returns {{job_id, log member, tenant}, ...}, reason
-- (why it stopped: 'idle' when no tenant has a ready job).
local function grant_now(maxn, suffix)
  call('ZREMRANGEBYSCORE', INFLIGHT, '-inf', now)
  call('ZREMRANGEBYSCORE', LOG, '-inf', now - WINDOW - MARGIN - 1)
  for _, t in ipairs(call('ZRANGEBYSCORE', BLOCKED, '-inf', now, 'LIMIT', 0, 4)) do maybe_unblock(t) end
  local out, skips = {}, 0
  local reason = 'idle'
  while #out < maxn do
    local head = call('ZRANGE', TENANTS, 0, 0, 'WITHSCORES')
    if #head == 0 then reason = 'idle'; break end
    local why = blocked_reason()
    if why then reason = why; break end
    local member, start = head[1], tonumber(head[2])
    local tenant = string.sub(member, 14)
    local q, tin = A .. ':q:' .. tenant, A .. ':tin:' .. tenant
    local cap = tonumber(call('HGET', SCHED, 'cap:' .. tenant) or '0')
    call('ZREMRANGEBYSCORE', tin, '-inf', now)   -- lapsed leases (a release that never came)
    local popped = call('ZPOPMIN', q)
    if #popped == 0 or (cap > 0 and call('ZCARD', tin) >= cap) then
      if #popped > 0 then call('ZADD', q, popped[2], popped[1]) end
      -- nothing ready (stale entry) or at its cap: the tenant leaves the ready set
      call('ZREM', TENANTS, member)
      call('HDEL', SCHED, 'm:' .. tenant)
      if #popped > 0 then
        call('HSET', SCHED, 's:' .. tenant, fmt(start))
        call('ZADD', BLOCKED, earliest(tin), tenant)
      end
      skips = skips + 1
      if skips > 32 then reason = 'tenant_cap'; break end
    elseif call('HGET', JOB .. popped[1], 'state') ~= 'accepted' and popped[1] ~= SELF then
      -- finished (or being tried by another worker, which queues it again) while it waited: it is
      -- dropped, and costs neither budget nor the tenant's turn
      if call('ZCARD', q) == 0 then
        call('ZREM', TENANTS, member)
        call('HDEL', SCHED, 'm:' .. tenant)
      end
      skips = skips + 1
      if skips > 32 then break end
    else
      local job_id = popped[1]
      local weight = tonumber(call('HGET', SCHED, 'w:' .. tenant) or '1')
      local finish = start + 1 / weight
      call('HSET', SCHED, 'vt', fmt(start), 'f:' .. tenant, fmt(finish))
      call('ZREM', TENANTS, member)
      call('HDEL', SCHED, 'm:' .. tenant)
      if call('ZCARD', q) > 0 then activate(tenant, finish) end
      local entry = tenant .. '/' .. job_id .. ':' .. suffix .. tostring(#out)
      call('ZADD', LOG, now, entry)
      call('ZADD', INFLIGHT, now + LEASE, job_id)
      call('ZADD', tin, now + LEASE, job_id)
      call('HINCRBY', SCHED, 'granted:' .. tenant, 1)
      out[#out + 1] = {job_id, entry, tenant}
    end
  end
  call('PEXPIRE', LOG, WINDOW * 2 + 60000)
  return out, reason
end
