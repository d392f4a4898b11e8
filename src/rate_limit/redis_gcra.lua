-- The GCRA for one rate-limit cell, run by RedisStore as one script per call.
-- It is the rule of src/rate_limit/gcra.rs, in microseconds of the Redis
-- server's clock (TIME has microsecond resolution), so replicas whose own
-- clocks are skewed still agree.
--
-- KEYS[1]  the cell: its value is the theoretical arrival time (TAT), in
--          microseconds since the Unix epoch. Missing = a fresh cell. The
--          script touches no other key, so it runs on Redis Cluster.
-- ARGV[1]  interval: microseconds between two calls at the steady rate (>= 1)
-- ARGV[2]  tolerance: how far ahead of now the TAT may run, in microseconds
--          (interval * (burst - 1))
-- ARGV[3]  max_wait: the longest the caller waits for its slot, microseconds
--
-- Returns {1, wait}: the slot is taken, the call goes after `wait` us;
--      or {0, wait}: refused, a call would conform after `wait` us, and
--                    nothing was written.
--
-- All values stay below 2^53 (the caller clamps the arguments to 2^50), so
-- Lua's doubles hold them exactly.

-- Redis 3.2 to 4 need this before a write that follows TIME; from Redis 5
-- on, effects replication is the default and the call does nothing.
if redis.replicate_commands then
    redis.replicate_commands()
end

local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- GET answers false for a missing key; a fresh cell's TAT is now.
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local base = math.max(tat, now)
local wait = math.max(base - now - tolerance, 0)

if wait > max_wait then
    return {0, wait}
end

-- Take the slot: the TAT moves one interval past max(tat, now). The key
-- expires when the cell is idle again (TAT <= now: the same as a fresh
-- cell), so idle keys vanish. SET's PX is the PEXPIRE, in the same command.
local new_tat = base + interval
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {1, wait}
