-- Write many nodes' HostStates, each unless Redis holds a newer generation of it; drop the
-- claims each node's report confirms (its instances now count in its usage, so the claim
-- must stop counting in the same step). One call per batch: a listing of 100,000 nodes is
-- 200 commands, not 100,000.
-- KEYS: per node, its record then its claims hash (2 keys a node)
-- ARGV: per node, its generation, its record (see PlacementStore.put_nodes), how many
--       confirmed claim ids follow, then those ids
-- Returns how many nodes were written (the rest were older than what Redis held)
local written = 0
local arg = 1
for k = 1, #KEYS, 2 do
  local generation = tonumber(ARGV[arg])
  local confirmed = tonumber(ARGV[arg + 2])
  local stored = redis.call('GET', KEYS[k])
  if not stored or tonumber(string.match(stored, '^(%-?%d+) ')) <= generation then
    redis.call('SET', KEYS[k], ARGV[arg + 1])
    written = written + 1
    -- In slices: unpack() of thousands of ids would overflow Lua's stack.
    for i = arg + 3, arg + 2 + confirmed, 500 do
      redis.call('HDEL', KEYS[k + 1], unpack(ARGV, i, math.min(i + 499, arg + 2 + confirmed)))
    end
  end
  arg = arg + 3 + confirmed
end
return written
