-- Processes whose presence deadline in a room passed (SIGKILLed, partitioned): drop their
-- presence hashes and publish a leave for each of their members.
-- KEYS: procs, rooms
-- ARGV: presence key prefix, channel, room
-- Returns how many members were swept.
local _t = redis.call('TIME')
local now = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
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
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[3]) end
return gone
