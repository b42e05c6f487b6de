-- Release claims of one node. KEYS[1] the node's claims hash; ARGV[1] channel, then ids.
-- Returns how many existed.
local released = redis.call('HDEL', KEYS[1], unpack(ARGV, 2))
if released > 0 then
  redis.call('PUBLISH', ARGV[1], KEYS[1])
end
return released
