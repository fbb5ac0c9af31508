-- Heartbeat of one process in one room: extend its presence hash, its deadline in the
-- room's process set and the room's deadline.
-- KEYS: presence hash, procs, rooms, epoch
-- ARGV: ttl ms, key ttl ms, proc, room
-- Returns 1 if our presence hash still existed (else the caller rewrites it).
local _t = redis.call('TIME')
local now = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
redis.call('SET', KEYS[4], string.format('%d-0', now), 'NX')
local ok = redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[1]), ARGV[4])
return ok
