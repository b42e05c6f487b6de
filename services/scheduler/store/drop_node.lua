-- Forget a deleted node unless Redis already holds a newer generation of it (restored).
-- KEYS[1] the node's record, KEYS[2] claims hash; ARGV[1] the deleted node's generation.
local stored = redis.call('GET', KEYS[1])
if stored and tonumber(string.match(stored, '^(%-?%d+) ')) > tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
