-- Forget a deleted node unless Redis already holds a newer generation of it (restored).
-- KEYS[1] node hash, KEYS[2] claims hash; ARGV[1] the deleted node's generation.
local stored = redis.call('HGET', KEYS[1], 'gen')
if stored and tonumber(stored) > tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
