-- Tell a room's subscribers the newest id right now, at this point of the channel's event
-- order: a listener that just subscribed learns where it stands (to resume after a
-- reconnect) even if no message arrives before.
-- KEYS: meta
-- ARGV: channel
local id = redis.call('HGET', KEYS[1], 'last') or '0-0'
redis.call('PUBLISH', ARGV[1], cjson.encode({k='k', id=id}))
return id
