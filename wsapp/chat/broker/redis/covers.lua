-- What a resume with since= needs to know: when this dataset first served wsapp (the
-- epoch: anything older may be lost) and the room's floor (history holds every message
-- after it). A room without a meta hash either never had a message or expired; if it
-- expired, its newest message is older than `room ttl` ago, so the floor is then.
-- KEYS: epoch, meta
-- ARGV: room ttl ms (0: rooms do not expire)
-- Returns {epoch, floor}.
local now = clock_ms()
redis.call('SET', KEYS[1], string.format('%d-0', now), 'NX')
local floor = redis.call('HGET', KEYS[2], 'floor')
if not floor then
  local ttl = tonumber(ARGV[1])
  if ttl == 0 or redis.call('EXISTS', KEYS[2]) == 1 then
    floor = '0-0'
  else
    floor = string.format('%d-0', math.max(0, now - ttl + 1))
  end
end
return {redis.call('GET', KEYS[1]), floor}
