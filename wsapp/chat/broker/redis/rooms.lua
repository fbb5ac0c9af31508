-- Rooms with live members somewhere or with history Redis still keeps, for /api/rooms.
-- KEYS: rooms, known
-- ARGV: key prefix
-- Returns a flat list [room, member count, last id or '', ...].
local now = clock_ms()
local names = {}
local seen = {}
for _, r in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  seen[r] = true; names[#names + 1] = r
end
-- Rooms whose history keys expire from a second ago on: whether the meta hash still exists
-- decides (Redis keeps a key until its expiry time has passed), so a room is never left out
-- of the list while its history can still be read, nor listed after.
for _, r in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now - 1000, '+inf')) do
  if not seen[r] then seen[r] = true; names[#names + 1] = r end
end
local out = {}
for _, r in ipairs(names) do
  local n = 0
  for _, p in ipairs(redis.call('ZRANGEBYSCORE', ARGV[1] .. 'procs:' .. r, now, '+inf')) do
    n = n + redis.call('HLEN', ARGV[1] .. 'p:' .. r .. ':' .. p)
  end
  local last = redis.call('HGET', ARGV[1] .. 'm:' .. r, 'last') or ''
  if n > 0 or last ~= '' then
    out[#out + 1] = r; out[#out + 1] = n; out[#out + 1] = last
  end
end
return out
