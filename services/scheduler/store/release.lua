-- Release claims of one node. KEYS[1] the node's claims hash; ARGV[1] channel, ARGV[2] the
-- releasing replica, then ids.
-- Returns how many existed.
local released = redis.call('HDEL', KEYS[1], unpack(ARGV, 3))
if released > 0 then
  redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. KEYS[1])
end
return released
