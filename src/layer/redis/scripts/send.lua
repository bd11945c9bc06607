-- send (after push.lua): KEYS[1] the list; ARGV capacity, now (ms), expiry (ms), item.
return push(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
