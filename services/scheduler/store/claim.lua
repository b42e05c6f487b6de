-- Claim room on one node, atomically: sum the node's unexpired claims (dropping expired
-- ones), check that the request fits what the node reported plus those claims, and record
-- the claim with its expiry. The point of truth when schedulers race for the last room.
-- KEYS[1] the node's record (see PlacementStore.put_nodes), KEYS[2] the node's claims hash
-- ARGV: claim id, instance uuid, vcpus, memory_mb, disk_gb, ttl_ms, channel, replica
-- (the event says which replica claimed, so that one skips its own claim)
-- Returns {1, expires_ms, v, m, d} (claimed amounts: a bare-metal node is claimed whole)
--      or {0, why, gen, used v/m/d, claimed v/m/d, claims, instances}
--      or {-1} when the node is not in the store
local record = redis.call('GET', KEYS[1])
if not record then
  return {-1}
end
-- generation, capacity v/m/d, usage v/m/d, whole (0/1), instances
local n = '(%-?%d+) '
local node = {string.match(record, '^' .. string.rep(n, 9))}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cv, cm, cd, count = 0, 0, 0, 0
local claims = redis.call('HGETALL', KEYS[2])
for i = 1, #claims, 2 do
  local v, m, d, exp = string.match(claims[i + 1], '^(%d+) (%d+) (%d+) (%d+)')
  if tonumber(exp) <= now then
    redis.call('HDEL', KEYS[2], claims[i])
  else
    cv, cm, cd, count = cv + tonumber(v), cm + tonumber(m), cd + tonumber(d), count + 1
  end
end
local lv, lm, ld = tonumber(node[2]), tonumber(node[3]), tonumber(node[4])
local uv, um, ud = tonumber(node[5]), tonumber(node[6]), tonumber(node[7])
local v, m, d = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local refused = {0, '', tonumber(node[1]), uv, um, ud, cv, cm, cd, count, tonumber(node[9])}
if node[8] == '1' then
  if tonumber(node[9]) > 0 or count > 0 then
    refused[2] = 'taken'
    return refused
  end
  if v > lv or m > lm or d > ld then
    refused[2] = 'too small'
    return refused
  end
  v, m, d = lv, lm, ld
elseif uv + cv + v > lv or um + cm + m > lm or ud + cd + d > ld then
  refused[2] = 'full'
  return refused
end
local expires = now + tonumber(ARGV[6])
local value = v .. ' ' .. m .. ' ' .. d .. ' ' .. expires .. ' ' .. ARGV[2]
redis.call('HSET', KEYS[2], ARGV[1], value)
-- Every claim has the same lifetime, so the newest one outlives the rest: an abandoned
-- node's claims hash disappears by itself.
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6]))
-- The event carries the claim, so other replicas count it without reading it back.
redis.call('PUBLISH', ARGV[7], ARGV[8] .. ' ' .. KEYS[2] .. ' + ' .. ARGV[1] .. ' ' .. value)
return {1, expires, v, m, d}
