-- Make our presence hash hold exactly these members (after a reconnect, or when Redis
-- lost it); publish a leave for any other member it held (they left while we were away).
-- KEYS: presence hash
-- ARGV: key ttl ms, channel, member id, "seq<TAB>name", ...
local want = {}
for i = 3, #ARGV, 2 do want[ARGV[i]] = ARGV[i + 1] end
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  if not want[h[i]] then
    redis.call('HDEL', KEYS[1], h[i])
    local v = h[i + 1]
    local name = string.sub(v, string.find(v, '\t', 1, true) + 1)
    redis.call('PUBLISH', ARGV[2], cjson.encode({k='l', id=h[i], n=name}))
  end
end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if #ARGV > 2 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
