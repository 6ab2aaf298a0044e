-- Take the first message off the first non-empty queue list and record it as unacknowledged, in one
-- step: the message is always either on its list or in the unacked hash, never only in a process.
--
-- KEYS[1]  the unacked hash (delivery tag -> [message, exchange, routing key], as kombu writes it)
-- KEYS[2]  the unacked index (sorted set: delivery tag -> time delivered)
-- KEYS[3..] the queue lists, highest priority first
-- ARGV[1]  now (seconds, the client's clock, as kombu's own index uses)
--
-- Returns {list key, message, 1} when recorded, {list key, message, 0} when the message carries no
-- delivery tag to record it under (kombu then records it as it always did), or false when all lists
-- are empty.  The message text is stored verbatim: re-encoding it here would turn empty JSON arrays
-- into objects.
for i = 3, #KEYS do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local ok, message = pcall(cjson.decode, item)
    local tag, exchange, routing_key
    if ok and type(message) == 'table' and type(message.properties) == 'table' then
      tag = message.properties.delivery_tag
      local info = message.properties.delivery_info
      if type(info) == 'table' then
        exchange, routing_key = info.exchange, info.routing_key
      end
    end
    if type(tag) ~= 'string' or type(exchange) ~= 'string' or type(routing_key) ~= 'string' then
      return {KEYS[i], item, 0}
    end
    redis.call('HSET', KEYS[1], tag, '[' .. item .. ',' .. cjson.encode(exchange) .. ',' .. cjson.encode(routing_key) .. ']')
    redis.call('ZADD', KEYS[2], ARGV[1], tag)
    return {KEYS[i], item, 1}
  end
end
return false
