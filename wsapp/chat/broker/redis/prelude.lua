-- The prelude: scripts.py puts this in front of every script, so they share these helpers.

-- Redis's clock in milliseconds (every deadline in the broker's keys uses this clock).
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Keep a room's history keys (its stream and its meta hash) for at least `ms` more
-- milliseconds, or exactly `ms` when `exact`; `ms` 0 keeps them for ever. The room's score
-- in the `known` index is set to when they expire, so that listing rooms skips rooms
-- Redis forgot. A room without history (no meta hash) is left alone.
local function keep_room(stream, meta, known, room, now, ms, exact)
  if redis.call('EXISTS', meta) == 0 then return end
  if ms == 0 then
    redis.call('PERSIST', stream)
    redis.call('PERSIST', meta)
    redis.call('ZADD', known, '+inf', room)
    return
  end
  local left = redis.call('PTTL', meta)  -- -1: no expiry yet
  if exact or left < ms then
    left = ms
    redis.call('PEXPIRE', stream, ms)
    redis.call('PEXPIRE', meta, ms)
  end
  redis.call('ZADD', known, now + left, room)
end

