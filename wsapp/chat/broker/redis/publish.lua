-- Publish one chat message: assign its id (XADD), keep history bounded, record the trim
-- floor and the room's newest id, extend the room's expiry, remember the sender's ref, and
-- fan the message out (PUBLISH), in one atomic step, so every subscriber sees a room's
-- messages in id order.
--
-- It refuses to run after `deadline` (Redis ms): the caller has given up waiting by then
-- and answered that the outcome is unknown, so a command that reaches a stalled Redis
-- late is never published behind its sender's back. With a ref key, a second publish with
-- the same (sender, ref) returns the first one's id and publishes nothing.
--
-- KEYS: stream, meta, epoch, known, procs[, ref]
-- ARGV: maxlen, name, text, channel, room, room ttl ms (0: no expiry), keep ms while members
--       are present (see presence.py), deadline (Redis ms; 0: none), ref ttl ms
-- Returns {'new', id} | {'dup', id[, fields of the stored entry]} | {'late'}.
local now = clock_ms()
local deadline = tonumber(ARGV[8])
if deadline > 0 and now > deadline then return {'late'} end
if KEYS[6] then
  local seen = redis.call('GET', KEYS[6])
  if seen then
    local entry = redis.call('XRANGE', KEYS[1], seen, seen)
    if entry[1] then return {'dup', seen, entry[1][2]} end
    return {'dup', seen}
  end
end
redis.call('SET', KEYS[3], string.format('%d-0', now), 'NX')
local maxlen = tonumber(ARGV[1])
local n = redis.call('XLEN', KEYS[1])
if maxlen > 0 and n >= maxlen then
  -- the entries XADD MAXLEN is about to drop: history holds everything after the last one
  local drop = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n - maxlen + 1)
  redis.call('HSET', KEYS[2], 'floor', drop[#drop][1])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*', 'n', ARGV[2], 't', ARGV[3])
if maxlen == 0 then redis.call('HSET', KEYS[2], 'floor', id) end
redis.call('HSET', KEYS[2], 'last', id)
-- rooms Redis has forgotten; a second of slack, because a key lives until its expiry time has
-- passed (not reached) and the listing asks the meta hash itself in that second
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 1000)
local keep = tonumber(ARGV[6])
if redis.call('ZCOUNT', KEYS[5], now, '+inf') > 0 then keep = tonumber(ARGV[7]) end
keep_room(KEYS[1], KEYS[2], KEYS[4], ARGV[5], now, keep, false)
if KEYS[6] then redis.call('SET', KEYS[6], id, 'PX', ARGV[9]) end
redis.call('PUBLISH', ARGV[4], cjson.encode({k='m', id=id, n=ARGV[2], t=ARGV[3]}))
return {'new', id}
