"""The Lua scripts: each send or group send is one EVALSHA, capacity check and expiry included.

A channel is a Redis list; each entry is ``<expires at, ms, 14 digits><channel>\\n<msgpack>``,
so one list (a process's inbox, keyed by the part of a specific name up to its '!') can carry
messages for many channels and the receiver sorts them out. A group send writes one entry per
inbox for all its members there, named by the parts of their names after the '!' (the list
is their inbox): ``<expires at> <part> <part>...\\n<msgpack>``.
"""

from __future__ import annotations

__all__ = ["DURABLE_SEND", "GROUP_SEND", "HEARTBEAT", "SEND"]

# KEYS[1] the list, KEYS[2] (specific channels only) the inbox's set of full channels (the
# parts of their names after the '!').
# ARGV: capacity of the list, expiry seconds, the channel's part after '!', now in ms, entry
# (what is the same for every send to a channel first: the caller caches its encoding).
# A normal channel's list is its own, so its length is the channel's. A specific channel shares
# its process's inbox: the receiving process buffers its messages and names the channels whose
# buffer is full in KEYS[2]; the inbox list itself holds at most inbox_capacity entries (a
# process that stopped popping). The entry is pushed first and taken back when that made the
# list too long (the script is atomic, so nobody sees it): one call fewer than LLEN first.
# Then expired entries at the head go, and the entry is pushed again if that made room.
SEND = """
local key = KEYS[1]
if #KEYS == 2 and redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 1 then return 0 end
local capacity = tonumber(ARGV[1])
local length = redis.call('RPUSH', key, ARGV[5])
if length > capacity then
  redis.call('RPOP', key)
  length = length - 1
  local now = tonumber(ARGV[4])
  while length > 0 do
    local head = redis.call('LINDEX', key, 0)
    if tonumber(string.sub(head, 1, 14)) >= now then break end
    redis.call('LPOP', key)
    length = length - 1
  end
  if length >= capacity then return 0 end
  redis.call('RPUSH', key, ARGV[5])
end
redis.call('EXPIRE', key, ARGV[2])
return 1
"""

# KEYS[1] the stream. ARGV: msgpack payload, capacity.
DURABLE_SEND = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('XADD', KEYS[1], '*', 'm', ARGV[1])
return 1
"""

# KEYS[1] the group's sorted set of *targets* on this shard: the inboxes holding members
# (names ending in '!', scored with their latest membership) and the normal and durable
# channels that are members (scored with their own). An inbox's members are the sorted set
# KEYS[1] .. ':' .. inbox, of the parts of their names after the '!' (member -> joined at, ms).
# ARGV: oldest live membership (ms), expires-at prefix (14 digits), payload, default capacity,
# expiry seconds, list key prefix, stream key prefix,
# then n, n pairs of (Lua pattern, capacity), then m, m durable Lua patterns, the durable
# channels' default capacity, then the inbox capacity and now (ms).
# The members of one inbox get ONE entry naming them all (" part part ...", read straight
# from their sorted set: no work per member here): the receiving process decodes the payload
# once and enforces each channel's capacity on its own buffer. An inbox holding
# inbox_capacity entries belongs to a process that stopped popping: skipped.
# KEYS[2] is the shard's marker (see HEARTBEAT): without it the shard lost its data and the
# memberships are not back yet, so nothing is sent and -1 returned.
# Returns the number of members that got the message.
GROUP_SEND = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local group, oldest = KEYS[1], '(' .. ARGV[1]
redis.call('ZREMRANGEBYSCORE', group, '-inf', oldest)
local targets = redis.call('ZRANGE', group, 0, -1)
if #targets == 0 then return 0 end
local stamp, payload, default_capacity = ARGV[2], ARGV[3], tonumber(ARGV[4])
local expiry, list_prefix, stream_prefix = ARGV[5], ARGV[6], ARGV[7]
local caps, durable = {}, {}
local i = 9
for n = 1, tonumber(ARGV[i - 1]) do caps[n] = {ARGV[i], tonumber(ARGV[i + 1])}; i = i + 2 end
local count = tonumber(ARGV[i]); i = i + 1
for n = 1, count do durable[n] = ARGV[i]; i = i + 1 end
local durable_capacity = tonumber(ARGV[i]); i = i + 1
local inbox_capacity, now = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
local sent = 0
local find, sub = string.find, string.sub
local patterned = #caps > 0 or count > 0
for _, target in ipairs(targets) do
  if sub(target, -1) == '!' then
    local members_key = group .. ':' .. target
    redis.call('ZREMRANGEBYSCORE', members_key, '-inf', oldest)
    local names = redis.call('ZRANGE', members_key, 0, -1)
    local key = list_prefix .. target
    if #names == 0 then
      redis.call('ZREM', group, target)
    else
      if redis.call('SCARD', key .. '#') > 0 then
        local room = {}
        for first = 1, #names, 1000 do
          local last = math.min(first + 999, #names)
          local full = redis.call('SMISMEMBER', key .. '#', unpack(names, first, last))
          for j = first, last do
            if full[j - first + 1] == 0 then room[#room + 1] = names[j] end
          end
        end
        names = room
      end
      local length = redis.call('LLEN', key)
      while length >= inbox_capacity and length > 0 do
        -- A full inbox is one nobody pops: drop its expired head before giving up on it.
        local head = redis.call('LINDEX', key, 0)
        if tonumber(sub(head, 1, 14)) >= now then break end
        redis.call('LPOP', key)
        length = length - 1
      end
      if length < inbox_capacity and #names > 0 then
        redis.call('RPUSH', key, stamp .. ' ' .. table.concat(names, ' ') .. '\\n' .. payload)
        redis.call('EXPIRE', key, expiry)
        sent = sent + #names
      end
    end
  else
    local capacity, is_durable, capped = default_capacity, false, false
    if patterned then
      for _, cap in ipairs(caps) do
        if find(target, cap[1]) then capacity = cap[2]; capped = true; break end
      end
      for _, pattern in ipairs(durable) do
        if find(target, pattern) then is_durable = true; break end
      end
      if is_durable and not capped then capacity = durable_capacity end
    end
    if is_durable then
      local stream = stream_prefix .. target
      if redis.call('XLEN', stream) < capacity then
        redis.call('XADD', stream, '*', 'm', payload)
        sent = sent + 1
      end
    else
      local key = list_prefix .. target
      if redis.call('LLEN', key) < capacity then
        redis.call('RPUSH', key, stamp .. target .. '\\n' .. payload)
        redis.call('EXPIRE', key, expiry)
        sent = sent + 1
      end
    end
  end
end
return sent
"""

# KEYS[1] the shard's set of live processes (name -> last heartbeat, ms), KEYS[2] the shard's
# marker, written once every process's memberships are on the shard. ARGV: this process's
# name, now (ms), the oldest live heartbeat (ms), how long the set is kept (ms).
# Returns -1 when the marker is missing (the shard lost its data: memberships must be
# re-asserted first), else the live processes.
HEARTBEAT = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
