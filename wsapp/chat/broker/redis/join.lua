-- A member of this process enters a room: record it in the process's presence hash (with
-- a join sequence number, so members list in join order across processes), extend the
-- process's and the room's presence deadlines and the room's history expiry, and tell the
-- room's subscribers. Like publish, it refuses to run after `deadline` (the caller gave up).
-- KEYS: presence hash, procs, rooms, seq, stream, meta, known
-- ARGV: member id, name, proc, ttl ms, key ttl ms, room, channel, room keep ms,
--       deadline (Redis ms; 0: none)
-- Returns the member's join sequence number, or 0 when too late.
local now = clock_ms()
local deadline = tonumber(ARGV[9])
if deadline > 0 and now > deadline then return 0 end
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], ARGV[1], seq .. '\t' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)  -- rooms nobody refreshed in time
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[6])
keep_room(KEYS[5], KEYS[6], KEYS[7], ARGV[6], now, tonumber(ARGV[8]), false)
redis.call('PUBLISH', ARGV[7], cjson.encode({k='j', id=ARGV[1], n=ARGV[2]}))
return seq
