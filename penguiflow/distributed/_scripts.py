"""The server-side steps that must be atomic, as Lua, and how to call them.

Design note (the commit): a node's outputs are published and its input acknowledged in one
script, after checking that this consumer still owns the input (a consumer that lost it to a
take-over must not publish: the new owner will), that the trace is not cancelled, and that
every output stream has room. A crash before the commit re-runs the node; after it there is
nothing to redo. A retry after a lost reply finds the entry gone and is fenced: safe.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "COMMIT_CANCELLED",
    "COMMIT_FENCED",
    "COMMIT_FULL",
    "COMMIT_MANY",
    "DEAD_LETTER",
    "EMIT",
    "EMIT_DUPLICATE",
    "EMIT_FULL",
    "HEARTBEAT",
    "PRESENCE",
]

EMIT_FULL: Final = 0
EMIT_DUPLICATE: Final = -1

# KEYS: the dedup marker, the caller's result stream, then one stream per target.
# ARGV: maxsize, marker ttl (s), body, the result stream's bound.  All targets or none: a full
# target refuses the whole emit, and so does the caller's own result stream while it holds as
# many unread results as its bound (a caller that stops reading stops only itself).
EMIT: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local results = tonumber(ARGV[4])
if results > 0 and redis.call('XLEN', KEYS[2]) >= results then return 0 end
local max = tonumber(ARGV[1])
if max > 0 then
  for i = 3, #KEYS do
    if redis.call('XLEN', KEYS[i]) >= max then return 0 end
  end
end
for i = 3, #KEYS do redis.call('XADD', KEYS[i], '*', 'e', ARGV[3]) end
redis.call('SET', KEYS[1], '1', 'EX', tonumber(ARGV[2]))
return #KEYS - 2
"""

COMMIT_FENCED: Final = -1
COMMIT_CANCELLED: Final = -2
COMMIT_FULL: Final = -3

# The commit of a batch of entries in one call (the lever for throughput: one script, one
# round trip and one parse for many messages).  ARGV: consumer, count, then per entry: group,
# entry id, output count n, and n (maxsize, body) pairs.  KEYS per entry: input stream, cancel
# marker, its n outputs.  Returns one {code, index} per entry: {n, 0} published and acked,
# {-1, 0} fenced (not owned by this consumer: taken over, or already committed by a try whose
# reply was lost), {-2, 0} cancelled (acked, nothing published), {-3, k} output k (1-based)
# has no room (nothing done: back off and retry).  Each entry is judged on its own.
COMMIT_MANY: Final = """
local consumer = ARGV[1]
local k, a = 1, 3
local answers = {}
for c = 1, tonumber(ARGV[2]) do
  local group, id, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  local input, marker, first = KEYS[k], KEYS[k + 1], k + 2
  k = k + 2 + n
  local code, index = 0, 0
  local owner = redis.call('XPENDING', input, group, id, id, 1)
  if #owner == 0 or owner[1][2] ~= consumer then
    code = -1
  elseif redis.call('EXISTS', marker) == 1 then
    redis.call('XACK', input, group, id)
    redis.call('XDEL', input, id)
    code = -2
  else
    local adding = {}
    for j = 0, n - 1 do
      local key, max = KEYS[first + j], tonumber(ARGV[a + 2 * j])
      adding[key] = (adding[key] or 0) + 1
      if max > 0 and redis.call('XLEN', key) + adding[key] > max then
        code, index = -3, j + 1
        break
      end
    end
    if code == 0 then
      for j = 0, n - 1 do redis.call('XADD', KEYS[first + j], '*', 'e', ARGV[a + 2 * j + 1]) end
      redis.call('XACK', input, group, id)
      redis.call('XDEL', input, id)
      code = n
    end
  end
  a = a + 2 * n
  answers[#answers + 1] = {code, index}
end
return answers
"""

# KEYS: a stream.  ARGV: group, consumer, ids...  Resets the idle time of the ids this consumer
# still owns (XCLAIM JUSTID: the delivery count stays), and returns them; an id taken over by
# another consumer is left alone (fenced), so a heartbeat never steals work back.
HEARTBEAT: Final = """
local kept = {}
for i = 3, #ARGV do
  local owner = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #owner > 0 and owner[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    kept[#kept + 1] = ARGV[i]
  end
end
return kept
"""

# KEYS: the stream, the node's dead-letter stream.  ARGV: group, consumer, entry id, reason.
# Moves an entry this consumer owns to the
# dead-letter stream with where it came from, why and how often it was delivered; acks it.
DEAD_LETTER: Final = """
local owner = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #owner == 0 or owner[1][2] ~= ARGV[2] then return 0 end
local entry = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
local body = ''
if #entry > 0 then
  local fields = entry[1][2]
  for i = 1, #fields, 2 do if fields[i] == 'e' then body = fields[i + 1] end end
end
redis.call('XADD', KEYS[2], '*', 'stream', KEYS[1], 'id', ARGV[3], 'node', ARGV[1],
  'reason', ARGV[4], 'deliveries', owner[1][4], 'e', body)
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
"""

# KEYS: the flow's worker set, the flow's worker-info hash.  ARGV: worker name, its info (JSON),
# heartbeat ttl (ms), how long a dead worker stays listed (ms).  Scores the worker by when its
# heartbeat expires, on the server's clock (hosts' clocks may differ; the server's is the one
# every reader compares with), and forgets workers dead for longer than ARGV[4].  Returns the
# server's time in ms.
PRESENCE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[4]))
for _, name in ipairs(gone) do
  redis.call('ZREM', KEYS[1], name)
  redis.call('HDEL', KEYS[2], name)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return now
"""
