-- KEYS: 1 job, 2 due_submit, 3 due_check, 4 timeline, 5 due_resume
-- ARGV: 1 job_id, 2 reason, 3 retention_ms, 4 resume_after_ms
-- Cancels an unfinished job: it leaves both due queues (a job not yet submitted never will be: its
-- claim is dropped, so a worker about to send the create finds its claim lost), and any later
-- upstream outcome is ignored (kie.ai has no cancel call).  Returns {verdict, task_id, was_sent, state}:
-- verdict 'cancelled', 'finished' (it already was terminal, in `state`) or 'missing'.
local f = redis.call('HMGET', KEYS[1], 'state', 'task_id', 'sending_at')
local state = f[1]
if not state then return {'missing', '', 0, ''} end
if TERMINAL[state] then return {'finished', '', 0, state} end
local tid = f[2] or ''
local sent = 0
if tid ~= '' or f[3] then sent = 1 end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', now, 'updated_at', now, 'last_error', ARGV[2],
           'outcome', cjson.encode({error = 'GenerationCancelled', task_id = tid, submitted = (sent == 1),
                                    reason = ARGV[2]}))
redis.call('HDEL', KEYS[1], 'claim', 'claimed_until', 'sending_at', 'wait_reason', 'unknown_since')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local detail = 'before submission'
if sent == 1 then detail = 'after submission (' .. ((tid ~= '' and tid) or 'create in flight') ..
                           '): kie.ai may still bill it' end
event(KEYS[4], 'cancelled', ARGV[2] .. ', ' .. detail)
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[4]), ARGV[1])   -- its waiters are failed like a finish's
expire_job(KEYS[1], tonumber(ARGV[3]))
return {'cancelled', tid, sent, 'cancelled'}
