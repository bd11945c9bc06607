-- push(key, capacity, now, expiry, item): pushes `item` (`<deadline ms> <json>`) onto list `key`
-- unless it holds `capacity` unexpired messages (expired ones, at the front, are dropped first).
-- Returns {queued (0 or 1), expired dropped}. The list lives a minute past its newest message's
-- expiry: long enough for a reader or a sender to find (and count) expired messages, short
-- enough that an abandoned channel does not stay in Redis.
local function push(key, capacity, now, expiry, item)
  local expired = 0
  if redis.call('LLEN', key) >= capacity then
    while true do
      local head = redis.call('LINDEX', key, 0)
      if not head then break end
      local deadline = tonumber(string.match(head, '^(%d+)'))
      if deadline and deadline <= now then
        redis.call('LPOP', key)
        expired = expired + 1
      else
        break
      end
    end
    if redis.call('LLEN', key) >= capacity then return {0, expired} end
  end
  redis.call('RPUSH', key, item)
  redis.call('PEXPIRE', key, expiry + 60000)
  return {1, expired}
end
