-- Write one node's HostState unless Redis holds a newer generation; drop the claims the
-- node's report confirms (its instances now count in `used`, so the claim must stop
-- counting in the same step).
-- KEYS[1] node hash, KEYS[2] the node's claims hash
-- ARGV: generation, host, nodename, limit v/m/d, used v/m/d, whole, instances, state,
--       then the confirmed claim ids
-- Returns {written (0/1), claims dropped}
local stored = redis.call('HGET', KEYS[1], 'gen')
local written = 0
if not stored or tonumber(stored) <= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'host', ARGV[2], 'nodename', ARGV[3],
    'lv', ARGV[4], 'lm', ARGV[5], 'ld', ARGV[6], 'uv', ARGV[7], 'um', ARGV[8], 'ud', ARGV[9],
    'whole', ARGV[10], 'ni', ARGV[11], 'state', ARGV[12])
  written = 1
end
local dropped = 0
if written == 1 then
  -- In slices: unpack() of thousands of ids would overflow Lua's stack.
  for i = 13, #ARGV, 500 do
    dropped = dropped + redis.call('HDEL', KEYS[2], unpack(ARGV, i, math.min(i + 499, #ARGV)))
  end
end
return {written, dropped}
