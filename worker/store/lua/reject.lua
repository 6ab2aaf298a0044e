-- KEYS: 1 job, 2 jobs index, 3 timeline   ARGV: 1 job_id, 2 model, 3 error_json, 4 retention_ms
-- Records a job whose input was invalid, unless the job already exists; it expires after retention_ms.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'job_id', ARGV[1], 'state', 'rejected', 'model', ARGV[2], 'last_error', ARGV[3],
           'created_at', now, 'updated_at', now, 'finished_at', now)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('DEL', KEYS[3])
event(KEYS[3], 'rejected', ARGV[3])
expire_job(KEYS[1], tonumber(ARGV[4]))
return 1
