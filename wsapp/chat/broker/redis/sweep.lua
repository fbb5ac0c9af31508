-- Processes whose presence deadline in a room passed (SIGKILLed, partitioned): drop their
-- presence hashes and publish a leave for each of their members. When no process is left,
-- the room's history expires `room ttl` from now.
-- KEYS: procs, rooms, stream, meta, known
-- ARGV: presence key prefix, channel, room, room ttl ms
-- Returns how many members were swept.
local now = clock_ms()
local gone = 0
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  local key = ARGV[1] .. p
  local h = redis.call('HGETALL', key)
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], p)
  for i = 1, #h, 2 do
    local v = h[i + 1]
    local name = string.sub(v, string.find(v, '\t', 1, true) + 1)
    redis.call('PUBLISH', ARGV[2], cjson.encode({k='l', id=h[i], n=name}))
    gone = gone + 1
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[3])
  if gone > 0 then
    keep_room(KEYS[3], KEYS[4], KEYS[5], ARGV[3], now, tonumber(ARGV[4]), true)
  end
end
return gone
