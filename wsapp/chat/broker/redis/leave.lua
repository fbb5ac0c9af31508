-- A member leaves a room: remove it from whichever process's presence hash holds it (our
-- own first: that is where it normally is), drop empty hashes and rooms, tell subscribers.
-- KEYS: procs, rooms
-- ARGV: room, member id, own proc, presence key prefix, channel
-- Returns 1 if the member was found, else 0.
local procs = redis.call('ZRANGE', KEYS[1], 0, -1)
table.insert(procs, 1, ARGV[3])
for _, p in ipairs(procs) do
  local key = ARGV[4] .. p
  local v = redis.call('HGET', key, ARGV[2])
  if v then
    redis.call('HDEL', key, ARGV[2])
    if redis.call('HLEN', key) == 0 then
      redis.call('DEL', key)
      redis.call('ZREM', KEYS[1], p)
    end
    if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
    local name = string.sub(v, string.find(v, '\t', 1, true) + 1)
    redis.call('PUBLISH', ARGV[5], cjson.encode({k='l', id=ARGV[2], n=name}))
    return 1
  end
end
return 0
