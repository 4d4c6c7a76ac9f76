"""Every Lua script the fleet runs in Redis, in one place (each is tested against a real Redis and
fakeredis in tests/unit/core/test_scripts.py).

Scripts read Redis server time (``TIME``), so processes with skewed clocks agree. Values are
returned as strings where they are fractions (Redis truncates Lua numbers to integers).
"""

from __future__ import annotations

# -- rates and slots ---------------------------------------------------------------------------

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# The bucket KEYS[1] (paused by KEYS[2]) refilled to ``now``: a paused bucket returns its pause;
# else ``tokens`` holds what is there for ``req`` (ARGV[1..3]: rate, capacity, tokens wanted).
_REFILL = """
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return tostring(paused - now) end
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local req = tonumber(ARGV[3])
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1])
local ts = tonumber(data[2])
if tokens == nil or ts == nil then tokens = cap; ts = now end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
"""

BUCKET_LUA = (
    _NOW
    + _REFILL
    + """
local wait = 0
if tokens >= req then tokens = tokens - req else wait = (req - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(cap / rate) + 60)
return tostring(wait)
"""
)

PAUSE_LUA = (
    _NOW
    + """
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > cur then
  redis.call('SET', KEYS[1], tostring(untl), 'EX', math.ceil(tonumber(ARGV[1])) + 1)
end
return tostring(math.max(untl, cur) - now)
"""
)

SLOT_LUA = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 60)
  return 1
end
return 0
"""
)

# A slot and a permit at once (one round trip): the slot only if a permit is there too, and no
# permit is spent without a slot. '-1': every slot is taken; '0': both taken; else the seconds
# until a permit (the bucket is paused, or empty).
# KEYS: the bucket, its pause, the slots; ARGV: rate, capacity, tokens, slot limit, lease, holder.
SLOT_AND_PERMIT_LUA = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return '-1' end
"""
    + _REFILL
    + """
if tokens < req then return tostring((req - tokens) / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - req), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(cap / rate) + 60)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[6])
redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[5])) + 60)
return '0'
"""
)


# -- values that name their holder ---------------------------------------------------------------

# Delete a key only if it still holds the given value (a lock, a cached token): compare-and-delete.
COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# Replace a key's value only if it still holds the given one, with a new expiry: compare-and-set.
# KEYS: the key; ARGV: expected value, new value, seconds to live. 1 when replaced.
COMPARE_AND_SET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  return 1
end
return 0
"""

# Renew a key's expiry only if it still holds the given value: compare-and-expire.
# KEYS: the key; ARGV: expected value, seconds to live. 1 when renewed.
COMPARE_AND_EXPIRE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
return 0
"""

# Set a key only if it still holds the given value, or is absent when that value is '': a
# compare-and-set that also creates (the close lock's create, renewal, park and take-over,
# shared/coordination/close_lock.py). KEYS: the key; ARGV: expected value ('' = absent), new
# value, milliseconds to live. 1 when set.
CREATE_OR_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# -- counts ---------------------------------------------------------------------------------------

# Count one down, never below 0 (a count that is a hint: a message delivered twice is counted
# down twice). KEYS: the key; ARGV: seconds to live. The new count.
DECREMENT_TO_ZERO = """
local n = redis.call('DECR', KEYS[1])
if n < 0 then
  redis.call('SET', KEYS[1], 0, 'EX', tonumber(ARGV[1]))
  return 0
end
return n
"""
