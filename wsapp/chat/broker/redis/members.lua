-- Members of a room across the processes whose presence deadline is still in the future.
-- KEYS: procs
-- ARGV: presence key prefix
-- Returns a flat list [member id, "seq<TAB>name", ...].
local now = clock_ms()
local out = {}
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local h = redis.call('HGETALL', ARGV[1] .. p)
  for i = 1, #h do out[#out + 1] = h[i] end
end
return out
