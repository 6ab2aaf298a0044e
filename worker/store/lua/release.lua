-- KEYS: 1 inflight, 2 job, 3 rate log, 4 cooldown, 5 paused
-- ARGV: 1 job_id, 2 account key base
-- Frees the job's in-flight slot (the account's and its tenant's); a tenant that was held at its
-- cap becomes ready again.
local LOG, COOLDOWN, PAUSED, INFLIGHT, A, JOB, SELF = KEYS[3], KEYS[4], KEYS[5], KEYS[1], ARGV[2], '', ''
local WINDOW, LIMIT, MARGIN, MAX_IN_FLIGHT, LEASE = 0, 0, 0, 0, 0
-- include: fair
release(ARGV[1], call('HGET', KEYS[2], 'tenant') or 'default')
return 1
