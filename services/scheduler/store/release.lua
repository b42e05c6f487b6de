-- Release claims of one node. KEYS[1] the node's claims hash; ARGV[1] channel, ARGV[2] the
-- releasing replica, then ids.
-- Returns how many existed.
local released = redis.call('HDEL', KEYS[1], unpack(ARGV, 3))
if released > 0 then
  -- The event names the claims, so other replicas drop them without reading the node.
  redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. KEYS[1] .. ' - ' .. table.concat(ARGV, ' ', 3))
end
return released
