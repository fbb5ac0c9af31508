-- Members of a room across the processes whose presence deadline is still in the future.
-- KEYS: procs
-- ARGV: presence key prefix
-- Returns a flat list [member id, "seq<TAB>name", ...].
local _t = redis.call('TIME')
local now = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
local out = {}
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local h = redis.call('HGETALL', ARGV[1] .. p)
  for i = 1, #h do out[#out + 1] = h[i] end
end
return out
