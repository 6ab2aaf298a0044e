-- KEYS: 1 rate log   ARGV: 1 member
-- Moves a create's entry to now (the moment its answer arrived), if it is still in the log.
return redis.call('ZADD', KEYS[1], 'XX', 'GT', now, ARGV[1])
