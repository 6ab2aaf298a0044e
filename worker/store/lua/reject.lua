-- KEYS: 1 job   ARGV: 1 job_id, 2 model, 3 error_json, 4 retention_ms
-- Records a job whose input was invalid, unless the job already exists; it expires after retention_ms.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'job_id', ARGV[1], 'state', 'rejected', 'model', ARGV[2], 'last_error', ARGV[3],
           'created_at', now, 'updated_at', now, 'finished_at', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
