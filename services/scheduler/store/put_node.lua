-- Write one node's HostState unless Redis holds a newer generation; drop the claims the
-- node's report confirms (its instances now count in its usage, so the claim must stop
-- counting in the same step).
-- KEYS[1] the node's record, KEYS[2] the node's claims hash
-- ARGV: generation, the record (see PlacementStore.put_nodes), then the confirmed claim ids
-- Returns 1 if written, 0 if Redis held a newer generation
local stored = redis.call('GET', KEYS[1])
local written = 0
if not stored or tonumber(string.match(stored, '^(%-?%d+) ')) <= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2])
  written = 1
end
if written == 1 then
  -- In slices: unpack() of thousands of ids would overflow Lua's stack.
  for i = 3, #ARGV, 500 do
    redis.call('HDEL', KEYS[2], unpack(ARGV, i, math.min(i + 499, #ARGV)))
  end
end
return written
