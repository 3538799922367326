"""The Redis broker's Lua scripts: the history of a channel, appended and read in one step each; the
packet log of connection state recovery, appended as a message is published, and a kept session taken;
the presence entries of dead nodes, taken by one node.

A script runs atomically in Redis, so the offset a message gets, its place in the stream and the
moment it is PUBLISHed are one step: the order of offsets is the order of delivery. Keys and layout:
:mod:`tidings.brokers.redis.history`, :mod:`tidings.brokers.redis.sessions`.
"""

# Appends ``data`` to the packet log ``log`` (at most about ``max`` entries, none older than ``ttl``
# ms, by Redis's clock, which also makes the entry ids) as published to ``route``; returns ``data``
# as it is published: its log offset, the entry's id, on a line before it.
_LOG = """
local function logged(log, max, ttl, route, data)
  local id = redis.call('XADD', log, 'MAXLEN', '~', max, '*', 'r', route, 'd', data)
  local now = redis.call('TIME')
  local horizon = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ttl)
  redis.call('XTRIM', log, 'MINID', '~', string.format('%d', horizon))
  redis.call('PEXPIRE', log, ttl)
  return '#' .. id .. '\\n' .. data
end
"""

#: KEYS: log, topic. ARGV: log size, log ttl (ms), route, the envelope. Logs it and publishes it.
PUBLISH_LOGGED = (
    _LOG
    + """
return redis.call('PUBLISH', KEYS[2], logged(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]))
"""
)

#: KEYS: the master key. Notes the replication id of the Redis master it runs on there (run first on
#: every new connection): a promoted replica has an id of its own, so a history written before a
#: failover is told from one written after it.
NOTE_MASTER = """
local id = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')
if id and redis.call('GET', KEYS[1]) ~= id then
  redis.call('SET', KEYS[1], id)
end
"""

# The epoch of a history (stream, meta), a new one (``new``, offset 0, the stream emptied) if it has
# none or was written on another master than the one ``master`` names: Redis replicates
# asynchronously, so a replica promoted by a failover may lack messages that clients already got,
# and would give their offsets again. ``MASTER_ID`` is how the script finds the master's id.
_EPOCH = """
local function epoch_of(stream, meta, master, new)
  local found = redis.call('HMGET', meta, 'epoch', 'master')
  local id = MASTER_ID
  if found[1] and found[2] == id then
    return found[1]
  end
  redis.call('DEL', stream, meta)
  redis.call('HSET', meta, 'epoch', new, 'offset', 0)
  if id then
    redis.call('HSET', meta, 'master', id)
  end
  return new
end
"""
# The master's id as each new connection noted it in the ``master`` key (one Redis, or Sentinel's).
_NOTED_MASTER = "redis.call('GET', master)"
# The replication id of the master the script runs on (a Redis Cluster, where one key cannot serve
# the scripts of every slot: they read it themselves; ``master`` is the meta key again, unused).
_OWN_MASTER = "string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')"


def _history_scripts(master_id: str, publish: str) -> tuple[str, str]:
    """The scripts that publish to a history and read it, finding the master's id with
    ``master_id`` and publishing with ``publish``."""
    epoch = _EPOCH.replace("MASTER_ID", master_id)
    publish_history = (
        _LOG
        + epoch
        + """
local epoch = epoch_of(KEYS[1], KEYS[2], KEYS[3], ARGV[3])
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
local data = '@' .. offset .. ':' .. epoch .. '\\n' .. ARGV[4]
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], offset .. '-0', 'd', data)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if KEYS[5] then
  data = logged(KEYS[5], ARGV[5], ARGV[6], ARGV[7], data)
end
return redis.call('PUBLISH', KEYS[4], data)
""".replace("'PUBLISH'", f"'{publish}'")
    )
    read_history = (
        epoch
        + """
local epoch = epoch_of(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
if epoch == ARGV[1] then
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
    )
    return publish_history, read_history


#: PUBLISH_HISTORY: KEYS: stream, meta, master, channel topic[, log]. ARGV: size, ttl (ms), an epoch
#: for a new history, the envelope[, log size, log ttl (ms), route]. Gives the message the next
#: offset, appends it to the stream and publishes it with its position (and, given a log, its log
#: offset). READ_HISTORY: KEYS: stream, meta, master. ARGV: an epoch for a new history, ttl (ms), the
#: offset since (-1: none), its epoch. Returns {epoch, last offset, entries after the offset (if the
#: epoch is the same)}.
PUBLISH_HISTORY, READ_HISTORY = _history_scripts(_NOTED_MASTER, "PUBLISH")
#: The same on a Redis Cluster: SPUBLISH, the master's id from the node the script runs on; the
#: ``master`` key is the meta key again (every key of a script in one slot).
CLUSTER_PUBLISH_HISTORY, CLUSTER_READ_HISTORY = _history_scripts(_OWN_MASTER, "SPUBLISH")

#: KEYS: the kept session, log. ARGV: the offset its client had. The session (kept no longer), if the
#: log still holds the offset; else nothing.
TAKE_SESSION = """
local session = redis.call('GET', KEYS[1])
if not session then
  return false
end
redis.call('DEL', KEYS[1])
if #redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1]) == 0 then
  return false
end
return session
"""

# Takes the entries of ``node`` out of the presence hash ``key`` of ``channel``: appends ``channel,
# session id, entry`` to ``taken`` for each.
_TAKE_ENTRIES = """
local function take_entries(key, node, channel, taken)
  local mark = '["' .. node .. '",'
  local entries = redis.call('HGETALL', key)
  for i = 1, #entries, 2 do
    if string.sub(entries[i + 1], 1, #mark) == mark then
      redis.call('HDEL', key, entries[i])
      taken[#taken + 1] = channel
      taken[#taken + 1] = entries[i]
      taken[#taken + 1] = entries[i + 1]
    end
  end
end
"""

#: KEYS: the set of nodes with presence. ARGV: the name prefix, how long (ms) a reaped node's mark
#: stays. Takes the nodes of the set whose ``alive`` key is gone out of it, with their presence
#: entries (found through each node's set of channels), and marks each as reaped for its own next
#: heartbeat, should it be alive after all. Returns the entries taken, ``{channel, session id, entry,
#: ...}``: one script, so of several nodes running it, one takes each entry, once. Its other keys
#: are named by the nodes' ids: on a Redis Cluster, :data:`CLAIM_NODE` and :data:`TAKE_ENTRIES` do
#: it slot by slot.
REAP_PRESENCE = (
    _TAKE_ENTRIES
    + """
local taken = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'alive:' .. node) == 0 then
    redis.call('SREM', KEYS[1], node)
    redis.call('SET', ARGV[1] .. 'reaped:' .. node, 1, 'PX', ARGV[2])
    local index = ARGV[1] .. 'channels-of:' .. node
    for _, channel in ipairs(redis.call('SMEMBERS', index)) do
      take_entries(ARGV[1] .. 'presence:' .. channel, node, channel, taken)
    end
    redis.call('DEL', index)
  end
end
return taken
"""
)

#: On a Redis Cluster. KEYS: a node's ``alive`` key, its ``reaped`` mark, its set of channels (one
#: slot, the node's). ARGV: how long (ms) the mark stays. False if the node is alive; else marks it
#: reaped and takes its set of channels: of several nodes running it, one gets them.
CLAIM_NODE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
redis.call('SET', KEYS[2], 1, 'PX', ARGV[1])
local channels = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[3])
return channels
"""

#: On a Redis Cluster. KEYS: a channel's presence hash. ARGV: a node claimed by :data:`CLAIM_NODE`,
#: the channel. Takes the node's entries out of the hash: ``{channel, session id, entry, ...}``.
TAKE_ENTRIES = (
    _TAKE_ENTRIES
    + """
local taken = {}
take_entries(KEYS[1], ARGV[1], ARGV[2], taken)
return taken
"""
)
