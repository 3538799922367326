"""The Redis broker's Lua scripts: the history of a channel, appended and read in one step each.

A script runs atomically in Redis, so the offset a message gets, its place in the stream and the
moment it is PUBLISHed are one step: the order of offsets is the order of delivery. Keys and layout:
:mod:`tidings.brokers.redis.history`.
"""

#: KEYS: stream, meta, channel topic. ARGV: size, ttl (ms), an epoch for a new history, the envelope.
#: Gives the message the next offset, appends it to the stream and publishes it with its position.
PUBLISH_HISTORY = """
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  redis.call('DEL', KEYS[1])
  epoch = ARGV[3]
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
local data = '@' .. offset .. ':' .. epoch .. '\\n' .. ARGV[4]
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], offset .. '-0', 'd', data)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return redis.call('PUBLISH', KEYS[3], data)
"""
#: KEYS: stream, meta. ARGV: an epoch for a new history, ttl (ms), the offset since (-1: none), its
#: epoch. Returns {epoch, last offset, entries after the offset (if the epoch is the same)}.
READ_HISTORY = """
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  redis.call('DEL', KEYS[1])
  epoch = ARGV[1]
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local offset = redis.call('HGET', KEYS[2], 'offset') or '0'
local since = tonumber(ARGV[3])
local entries = {}
if since >= 0 and epoch == ARGV[4] and since < tonumber(offset) then
  entries = redis.call('XRANGE', KEYS[1], (since + 1) .. '-0', '+')
end
return {epoch, offset, entries}
"""
