-- Publish one named event to a room's channel (nothing is stored: events are not history).
--
-- Like publish, it refuses to run after `deadline` (Redis ms): the caller has given up
-- waiting by then and answered that the outcome is unknown, so an event that reaches a
-- stalled Redis late is never delivered behind its sender's back.
--
-- KEYS: none (one channel, named in ARGV)
-- ARGV: channel, payload (JSON, see keys.py), deadline (Redis ms; 0: none)
-- Returns the number of subscribed connections (processes) that got it, or -1 when too late.
local deadline = tonumber(ARGV[3])
if deadline > 0 and clock_ms() > deadline then return -1 end
return redis.call('PUBLISH', ARGV[1], ARGV[2])
