-- Rooms with live members somewhere or with history, for GET /api/rooms.
-- KEYS: rooms, last
-- ARGV: key prefix
-- Returns a flat list [room, member count, last id or '', ...].
local _t = redis.call('TIME')
local now = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
local names = {}
local seen = {}
for _, r in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  seen[r] = true; names[#names + 1] = r
end
for _, r in ipairs(redis.call('HKEYS', KEYS[2])) do
  if not seen[r] then seen[r] = true; names[#names + 1] = r end
end
local out = {}
for _, r in ipairs(names) do
  local n = 0
  for _, p in ipairs(redis.call('ZRANGEBYSCORE', ARGV[1] .. 'procs:' .. r, now, '+inf')) do
    n = n + redis.call('HLEN', ARGV[1] .. 'p:' .. r .. ':' .. p)
  end
  local last = redis.call('HGET', KEYS[2], r) or ''
  if n > 0 or last ~= '' then
    out[#out + 1] = r; out[#out + 1] = n; out[#out + 1] = last
  end
end
return out
