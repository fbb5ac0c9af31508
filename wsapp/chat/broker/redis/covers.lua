-- What a resume with since= needs to know: when this dataset first served wsapp (the
-- epoch: anything older may be lost) and the newest id trimmed from the room's history.
-- KEYS: epoch, floor
-- ARGV: room
-- Returns {epoch, newest trimmed id or '0-0'}.
local _t = redis.call('TIME')
local now = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
redis.call('SET', KEYS[1], string.format('%d-0', now), 'NX')
return {redis.call('GET', KEYS[1]), redis.call('HGET', KEYS[2], ARGV[1]) or '0-0'}
