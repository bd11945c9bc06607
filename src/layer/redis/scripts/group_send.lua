-- group_send (after push.lua): drops lapsed members of KEYS[1] (channels added from elsewhere,
-- scored by expiry); for a group that keeps a stream, appends the event to stream KEYS[2] at the
-- next offset of counter KEYS[4] in the epoch of KEYS[3] (a new epoch, and an empty stream, when
-- those are gone); publishes the event to the group's Redis channel ARGV[1] (its header says the
-- position as `@epoch:offset`), then delivers to each remaining member: a process-specific one by
-- publishing to its process, a named one by pushing to its list.
-- KEYS: 1 members added from elsewhere, 2 stream, 3 epoch, 4 offset counter.
-- ARGV: 1 group channel, 2 payload, 3 now (ms), 4 capacity, 5 expiry (ms), 6 event JSON,
--       7 key prefix, 8 this process's name, 9 events the stream keeps ('' for none),
--       10 stream age (ms), 11 a new epoch if needed, 12 the payload's header without target
--       (`<publisher> <number> `), to write the position into, 13 '1' on a Redis Cluster (then
--       11 and 12 are given, '' when unused).
-- On a Redis Cluster the group's channel is a shard channel (`SPUBLISH`), and the members added
-- from elsewhere, whose keys and channels are in other slots, are returned for the caller to
-- reach instead.
-- Returns {processes reached, named queued, named full, expired dropped, lapsed, epoch, offset,
--          members left to reach}.
local now = tonumber(ARGV[3])
local lapsed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local payload, epoch, offset = ARGV[2], '', 0
if ARGV[9] ~= '' then
  epoch = redis.call('GET', KEYS[3])
  if (not epoch) or redis.call('EXISTS', KEYS[4]) == 0 then
    epoch = ARGV[11]
    redis.call('SET', KEYS[3], epoch)
    redis.call('DEL', KEYS[2], KEYS[4])
  end
  offset = redis.call('INCR', KEYS[4])
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[9], offset .. '-0', 't', now, 'e', ARGV[6])
  local age = tonumber(ARGV[10])
  redis.call('PEXPIRE', KEYS[2], age)
  redis.call('PEXPIRE', KEYS[3], age)
  redis.call('PEXPIRE', KEYS[4], age)
  payload = ARGV[12] .. '@' .. epoch .. ':' .. offset .. '\n' .. ARGV[6]
end
if ARGV[13] == '1' then
  local reached = redis.call('SPUBLISH', ARGV[1], payload)
  return {reached, 0, 0, 0, lapsed, epoch, offset, redis.call('ZRANGE', KEYS[1], 0, -1)}
end
local reached = redis.call('PUBLISH', ARGV[1], payload)
local queued, full, expired = 0, 0, 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local bang = string.find(member, '!', 1, true)
  if bang then
    local process = string.sub(member, 1, bang - 1)
    reached = reached + redis.call('PUBLISH', ARGV[7] .. ':p:{' .. process .. '}',
      ARGV[8] .. ' 0 ' .. member .. '\n' .. ARGV[6])
  else
    local r = push(ARGV[7] .. ':c:{' .. member .. '}', tonumber(ARGV[4]), now, tonumber(ARGV[5]),
      (now + tonumber(ARGV[5])) .. ' ' .. ARGV[6])
    queued = queued + r[1]
    full = full + 1 - r[1]
    expired = expired + r[2]
  end
end
return {reached, queued, full, expired, lapsed, epoch, offset, {}}
