-- group_send (after push.lua): drops lapsed members of KEYS[1] (channels added from elsewhere,
-- scored by expiry), publishes ARGV[2] to the group's Redis channel ARGV[1], then delivers to
-- each remaining member: a process-specific one by publishing to its process, a named one by
-- pushing to its list.
-- ARGV: 1 group channel, 2 payload, 3 now (ms), 4 capacity, 5 expiry (ms), 6 event JSON,
--       7 key prefix, 8 this process's name.
-- Returns {processes reached, named queued, named full, expired dropped, lapsed}.
local now = tonumber(ARGV[3])
local lapsed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local reached = redis.call('PUBLISH', ARGV[1], ARGV[2])
local queued, full, expired = 0, 0, 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local bang = string.find(member, '!', 1, true)
  if bang then
    local process = string.sub(member, 1, bang - 1)
    reached = reached + redis.call('PUBLISH', ARGV[7] .. ':p:' .. process,
      ARGV[8] .. ' 0 ' .. member .. '\n' .. ARGV[6])
  else
    local r = push(ARGV[7] .. ':c:' .. member, tonumber(ARGV[4]), now, tonumber(ARGV[5]),
      (now + tonumber(ARGV[5])) .. ' ' .. ARGV[6])
    queued = queued + r[1]
    full = full + 1 - r[1]
    expired = expired + r[2]
  end
end
return {reached, queued, full, expired, lapsed}
