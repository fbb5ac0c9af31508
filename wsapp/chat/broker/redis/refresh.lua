-- Heartbeat of one process in one room: extend its presence hash, its deadline in the
-- room's process set, the room's deadline, and the room's history expiry (a room with
-- members is never forgotten).
-- KEYS: presence hash, procs, rooms, epoch, stream, meta, known
-- ARGV: ttl ms, key ttl ms, proc, room, room keep ms
-- Returns 1 if our presence hash still existed (else the caller rewrites it).
local now = clock_ms()
redis.call('SET', KEYS[4], string.format('%d-0', now), 'NX')
local ok = redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[1]), ARGV[4])
keep_room(KEYS[5], KEYS[6], KEYS[7], ARGV[4], now, tonumber(ARGV[5]), false)
return ok
