/**
 * Every Lua script the app runs, defined once. createRedis hands them to ioredis (its `scripts` option,
 * which calls defineCommand for each), so each becomes a method of the client: ioredis sends the source
 * once per connection and EVALSHA after that, sends it again on NOSCRIPT (a restarted or flushed Redis),
 * and gives the KEYS the client's keyPrefix like any other command's keys. They are defined when the
 * client is made rather than on first use: a script defined later would be missing from an auto-pipeline
 * already collecting that turn's commands.
 *
 * Each method takes its KEYS first (`numberOfKeys` of them, in the order of the Lua's KEYS[n]), then ARGV.
 */

type Key = string
type Arg = string | number

export interface RedisScripts {
  /** Deletes the key only while it still holds `value`: a lock or marker is released by its owner only. */
  deleteIfEquals(key: Key, value: Arg): Promise<number>

  /**
   * Token bucket (shared/http/rate-limit.ts). ARGV: tokens per second, burst, tokens wanted. Returns
   * [tokens granted (at most wanted), milliseconds until the next token when fewer were granted].
   */
  takeTokens(bucket: Key, ratePerSecond: Arg, burst: Arg, wanted: Arg): Promise<[number, number]>

  /** Cache-aside (shared/cache/cache-aside.ts): sets the value only if the generation is still `generation`. */
  setIfGeneration(value: Key, generationKey: Key, generation: Arg, json: Arg, ttlMs: Arg): Promise<number>

  /** First-come-first-served issuing (shared/coupons/issue-state.ts): [outcome, gen, 'stale'?]. */
  couponClaim(
    state: Key,
    winners: Key,
    pending: Key,
    userId: Arg,
    nowMs: Arg,
    staleBeforeMs: Arg,
  ): Promise<[string, string, ('stale' | 'final' | 'complete')?]>
  couponConfirm(state: Key, pending: Key, userId: Arg, gen: Arg): Promise<number>
  couponRelease(state: Key, winners: Key, pending: Key, userId: Arg, gen: Arg, soldOut: Arg): Promise<number>
  couponStage(rebuildLock: Key, staging: Key, token: Arg, ttlMs: Arg, ...userIds: Arg[]): Promise<number>
  couponCommitRebuild(
    state: Key,
    winners: Key,
    pending: Key,
    rebuildLock: Key,
    staging: Key,
    token: Arg,
    total: Arg,
    startsAt: Arg,
    endsAt: Arg,
    soldOut: Arg,
  ): Promise<number>
  couponSettleStale(state: Key, winners: Key, pending: Key, gen: Arg, ...triples: Arg[]): Promise<number>
  couponRemaining(state: Key, winners: Key): Promise<number>
}

export type ScriptDefinition = { numberOfKeys: number; lua: string }

export const REDIS_SCRIPTS = {
  deleteIfEquals: {
    numberOfKeys: 1,
    lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`,
  },

  // Time comes from Redis TIME, not from the instances, whose clocks may disagree. The key expires once
  // the bucket would be full again, so an idle caller costs no memory: a missing key is a full bucket.
  takeTokens: {
    numberOfKeys: 1,
    lua: `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
local wait = 0
if granted < wanted then
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return { granted, wait }`,
  },

  // A loader that read the row before an update committed must not put that old row back after the
  // update's invalidation, which bumped the generation.
  setIfGeneration: {
    numberOfKeys: 2,
    lua: `
local current = redis.call('GET', KEYS[2])
if (current or '') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`,
  },

  // A holder is told so first (even after the window closed), so that a client retrying a successful issue
  // with its Idempotency-Key is routed to the replay. `stale` flags an orphaned claim that reconciliation
  // could free (a process died between its claim and its commit). `final` flags a refusal no give-back
  // can undo: a holder whose claim is not pending holds the coupon in MySQL, and a coupon full with no
  // claim pending (or that MySQL said is full) is full in MySQL, where issued_quantity never goes down.
  couponClaim: {
    numberOfKeys: 3,
    lua: `
local state = redis.call('HMGET', KEYS[1], 'gen', 'total', 'startsAt', 'endsAt', 'soldOut')
local gen = state[1]
if not gen then return {'NOT_LOADED', ''} end
local user = ARGV[1]
local now = tonumber(ARGV[2])
local staleBefore = tonumber(ARGV[3])
if redis.call('SISMEMBER', KEYS[2], user) == 1 then
  local since = redis.call('ZSCORE', KEYS[3], user)
  if not since then return {'ALREADY_ISSUED', gen, 'final'} end
  if tonumber(since) < staleBefore then return {'ALREADY_ISSUED', gen, 'stale'} end
  return {'ALREADY_ISSUED', gen}
end
if state[3] ~= '' and now < tonumber(state[3]) then return {'NOT_ISSUABLE', gen} end
if state[4] ~= '' and now >= tonumber(state[4]) then return {'NOT_ISSUABLE', gen} end
if state[5] == '1' then return {'SOLD_OUT', gen, 'final'} end
if redis.call('SCARD', KEYS[2]) >= tonumber(state[2]) then
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if not oldest[2] then return {'SOLD_OUT', gen, 'complete'} end
  if tonumber(oldest[2]) < staleBefore then return {'SOLD_OUT', gen, 'stale'} end
  return {'SOLD_OUT', gen}
end
redis.call('SADD', KEYS[2], user)
redis.call('ZADD', KEYS[3], now, user)
return {'CLAIMED', gen}`,
  },

  // The user holds the coupon in MySQL: the claim is no longer pending.
  couponConfirm: {
    numberOfKeys: 2,
    lua: `
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[2] then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])`,
  },

  // Only a claim still pending in the same generation is given back: after a rebuild the set came from
  // MySQL, and a claim already settled by reconciliation was decided there. soldOut '1': MySQL said full.
  couponRelease: {
    numberOfKeys: 3,
    lua: `
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[2] then return 0 end
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'soldOut', '1') end
if redis.call('ZREM', KEYS[3], ARGV[1]) == 1 then
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
return 0`,
  },

  // Adds a chunk of holders to the staging set while this process still holds the rebuild lock.
  couponStage: {
    numberOfKeys: 2,
    lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1`,
  },

  // Publishes a rebuilt state in one step, and only if this process still holds the rebuild lock and no
  // other rebuild got there first. The token becomes the generation.
  couponCommitRebuild: {
    numberOfKeys: 5,
    lua: `
if redis.call('GET', KEYS[4]) ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[5])
  return 0
end
redis.call('DEL', KEYS[2], KEYS[3])
if redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('RENAME', KEYS[5], KEYS[2])
  redis.call('PERSIST', KEYS[2])
end
redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'total', ARGV[2], 'startsAt', ARGV[3], 'endsAt', ARGV[4], 'soldOut', ARGV[5])
redis.call('DEL', KEYS[4])
return 1`,
  },

  // ARGV: gen, then (userId, score, holds '1'|'0') triples. Settles a claim only if it is still the one
  // that was read (same score), so a newer claim of the same user is left alone.
  couponSettleStale: {
    numberOfKeys: 3,
    lua: `
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return 0 end
local settled = 0
for i = 2, #ARGV, 3 do
  local user = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[3], user)
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[3], user)
    if ARGV[i + 2] == '0' then redis.call('SREM', KEYS[2], user) end
    settled = settled + 1
  end
end
return settled`,
  },

  // -1 when the state is not loaded.
  couponRemaining: {
    numberOfKeys: 2,
    lua: `
local state = redis.call('HMGET', KEYS[1], 'gen', 'total', 'soldOut')
if not state[1] then return -1 end
if state[3] == '1' then return 0 end
local left = tonumber(state[2]) - redis.call('SCARD', KEYS[2])
if left < 0 then return 0 end
return left`,
  },
} as const satisfies Record<keyof RedisScripts, ScriptDefinition>
