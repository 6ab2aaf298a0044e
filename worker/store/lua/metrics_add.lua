-- Apply a batch of metric observations to the metrics hash in one step.
-- KEYS[1] metrics hash
-- ARGV    triples op, field, value: op "i" adds an integer (HINCRBY), "f" a float (HINCRBYFLOAT),
--         "s" sets a gauge (HSET).  An integer added to a field that holds a float is added as a float.
-- Returns the number of fields written.
local key = KEYS[1]
for i = 1, #ARGV, 3 do
  local op, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if op == 'i' then
    local done = redis.pcall('HINCRBY', key, field, value)
    if type(done) == 'table' and done.err then
      redis.call('HINCRBYFLOAT', key, field, value)
    end
  elseif op == 'f' then
    redis.call('HINCRBYFLOAT', key, field, value)
  else
    redis.call('HSET', key, field, value)
  end
end
return #ARGV / 3
