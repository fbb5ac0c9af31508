-- A member leaves a room: remove it from whichever process's presence hash holds it (our
-- own first: that is where it normally is), drop empty hashes, tell subscribers. When the
-- room has no process left, its history expires `room ttl` from now.
-- KEYS: procs, rooms, stream, meta, known
-- ARGV: room, member id, own proc, presence key prefix, channel, room ttl ms
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
    if redis.call('ZCARD', KEYS[1]) == 0 then
      redis.call('ZREM', KEYS[2], ARGV[1])
      keep_room(KEYS[3], KEYS[4], KEYS[5], ARGV[1], clock_ms(), tonumber(ARGV[6]), true)
    end
    local name = string.sub(v, string.find(v, '\t', 1, true) + 1)
    redis.call('PUBLISH', ARGV[5], cjson.encode({k='l', id=ARGV[2], n=name}))
    return 1
  end
end
return 0
