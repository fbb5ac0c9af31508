-- Publish one chat message: assign its id (XADD), keep history bounded, record the trim
-- floor and the room's newest id, and fan it out (PUBLISH), in one atomic step, so every
-- subscriber of the room sees its messages in id order.
-- KEYS: stream, last, epoch, floor
-- ARGV: maxlen, name, text, channel, room
local _t = redis.call('TIME')
local now = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
redis.call('SET', KEYS[3], string.format('%d-0', now), 'NX')
local maxlen = tonumber(ARGV[1])
local n = redis.call('XLEN', KEYS[1])
if maxlen > 0 and n >= maxlen then
  -- the entries XADD MAXLEN is about to drop: history holds everything after the last one
  local drop = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n - maxlen + 1)
  redis.call('HSET', KEYS[4], ARGV[5], drop[#drop][1])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*', 'n', ARGV[2], 't', ARGV[3])
if maxlen == 0 then redis.call('HSET', KEYS[4], ARGV[5], id) end
redis.call('HSET', KEYS[2], ARGV[5], id)
redis.call('PUBLISH', ARGV[4], cjson.encode({k='m', id=id, n=ARGV[2], t=ARGV[3]}))
return id
