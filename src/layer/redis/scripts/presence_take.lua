-- Takes ARGV[1] off presence hash KEYS[1] and returns the metadata it had (nil if none).
local meta = redis.call('HGET', KEYS[1], ARGV[1])
if meta then redis.call('HDEL', KEYS[1], ARGV[1]) end
return meta
