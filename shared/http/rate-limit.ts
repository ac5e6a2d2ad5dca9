import { BlockList, isIP } from 'node:net'
import { getConnInfo } from '@hono/node-server/conninfo'
import type { Context, MiddlewareHandler } from 'hono'
import type { Deps } from '../deps'
import { AppError } from '../errors'
import { authenticateOnce, type JwtKeys } from './auth'
import type { AppEnv } from './context'
import { problemResponse } from './problem'

export type RateLimitDeps = Pick<Deps, 'config' | 'redis' | 'metrics' | 'logger'>

/** A stalled Redis must not stall the API: past this the request goes through unlimited. */
const DECISION_TIMEOUT_MS = 250

const PRIVATE_NETWORKS = (() => {
  const list = new BlockList()
  list.addSubnet('127.0.0.0', 8, 'ipv4')
  list.addSubnet('10.0.0.0', 8, 'ipv4')
  list.addSubnet('172.16.0.0', 12, 'ipv4')
  list.addSubnet('192.168.0.0', 16, 'ipv4')
  list.addSubnet('169.254.0.0', 16, 'ipv4')
  list.addAddress('::1', 'ipv6')
  list.addSubnet('fc00::', 7, 'ipv6')
  list.addSubnet('fe80::', 10, 'ipv6')
  return list
})()

/** `::ffff:10.0.0.1` (an IPv4 peer on a dual-stack socket) → `10.0.0.1`. */
const normaliseAddress = (address: string) => {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  return mapped?.[1] ?? address
}

const validAddress = (raw: string | undefined): string | undefined => {
  const address = raw ? normaliseAddress(raw.trim()) : undefined
  return address && isIP(address) !== 0 ? address : undefined
}

const isPrivate = (address: string) => {
  const family = isIP(address)
  return family !== 0 && PRIVATE_NETWORKS.check(address, family === 4 ? 'ipv4' : 'ipv6')
}

/**
 * The client's address. Forwarding headers are believed only from a peer on a private network (our
 * nginx); from anyone else they are client-written and would let a caller pick a fresh bucket per
 * request. X-Real-IP is what nginx sets from the connection; without it, the *last* X-Forwarded-For hop
 * is the one our proxy appended (`$proxy_add_x_forwarded_for`), whereas the first is whatever the
 * client sent. `app.request()` in tests has no socket: those callers share the address `unknown`.
 */
export function clientAddress(c: Context): string {
  let peer: string | undefined
  try {
    peer = validAddress(getConnInfo(c).remote.address)
  } catch {
    peer = undefined
  }
  if (!peer) return 'unknown'
  if (!isPrivate(peer)) return peer
  const forwarded = c.req.header('X-Forwarded-For')?.split(',').at(-1)
  return validAddress(c.req.header('X-Real-IP')) ?? validAddress(forwarded) ?? peer
}

/** `user:<id>` for a verified token, else `addr:<ip>`. A bad token is not an error here: the route decides. */
async function callerKey(c: Context<AppEnv>, keys: JwtKeys): Promise<string> {
  if (c.req.header('Authorization')) {
    try {
      const { userId } = await authenticateOnce(c, keys)
      return `user:${userId}`
    } catch {
      // An invalid token is limited by address, so sending garbage tokens buys no fresh bucket.
    }
  }
  return `addr:${clientAddress(c)}`
}

type Decision = { allowed: boolean; retryAfterMs: number }

/**
 * Decisions for one caller's requests that arrive in the same turn of the event loop are taken together,
 * with one script call that grants up to that many tokens: the same answers as one call each (the script
 * grants at most what the bucket holds), at a fraction of the round trips when one caller floods.
 */
function createTaker(redis: RateLimitDeps['redis'], rate: number, burst: number) {
  type Waiting = { resolve(decision: Decision): void; reject(error: unknown): void }
  let pending = new Map<string, Waiting[]>()
  const flush = () => {
    const batch = pending
    pending = new Map()
    for (const [key, waiting] of batch) {
      redis.takeTokens(key, rate, burst, waiting.length).then(
        ([granted, wait]) => {
          for (const [i, w] of waiting.entries()) {
            w.resolve(
              i < granted ? { allowed: true, retryAfterMs: 0 } : { allowed: false, retryAfterMs: wait },
            )
          }
        },
        (error: unknown) => {
          for (const w of waiting) w.reject(error)
        },
      )
    }
  }
  return (key: string) =>
    new Promise<Decision>((resolve, reject) => {
      const waiting = pending.get(key)
      if (waiting) waiting.push({ resolve, reject })
      else {
        if (pending.size === 0) setImmediate(flush)
        pending.set(key, [{ resolve, reject }])
      }
    })
}

/**
 * Callers refused lately, until their next token: the bucket holds less than one token until then
 * whatever any instance does (tokens only come with time), so refusing them here without asking Redis
 * gives the same answer, and a flood of refused requests costs no round trip. Bounded: cleared when full.
 */
const REFUSED_MAX = 10_000

const withTimeout = <T>(promise: Promise<T>, ms: number): Promise<T> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`rate limit decision timed out after ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/**
 * Limits each caller to RATE_LIMIT_PER_SECOND with bursts of RATE_LIMIT_BURST: a token bucket per
 * caller, read and updated in one script (takeToken, shared/redis/scripts.ts), so that concurrent
 * requests from one caller (on any instance) can never both take the last token. Either set to 0 turns
 * limiting off (a bucket of 0 tokens would refuse everything, which nobody means). Fails open: when
 * Redis cannot answer, the request is allowed and counted as outcome="error", because losing the limit
 * for a while is better than turning a Redis outage into an API outage.
 */
export function rateLimit(deps: RateLimitDeps): MiddlewareHandler<AppEnv> | undefined {
  const { rateLimitPerSecond: rate, rateLimitBurst: burst } = deps.config
  // Off: no middleware at all, rather than one every request passes through.
  if (rate === 0 || burst === 0) return undefined
  const decisions = deps.metrics.rateLimitDecisions
  const take = createTaker(deps.redis, rate, burst)
  const refusedUntil = new Map<string, number>()
  let failing = false
  const refuse = (c: Context<AppEnv>, retryAfterMs: number) => {
    decisions.inc({ outcome: 'limited' })
    const retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000))
    return problemResponse(
      c,
      new AppError('RATE_LIMITED', `Too many requests; retry in ${retryAfterSeconds} s`, {
        retryAfterSeconds,
      }),
    )
  }
  return async (c, next) => {
    const key = `ratelimit:${await callerKey(c, deps.config)}`
    const until = refusedUntil.get(key)
    if (until !== undefined) {
      const left = until - Date.now()
      if (left > 0) return refuse(c, left)
      refusedUntil.delete(key)
    }
    let decision: Decision
    try {
      decision = await withTimeout(take(key), DECISION_TIMEOUT_MS)
      if (failing) deps.logger.info('rate limiter recovered: Redis answers again')
      failing = false
    } catch (error) {
      // Logged on the transition only: during an outage every request would repeat the same line.
      if (!failing) deps.logger.warn('rate limiter failing open: Redis unavailable', { error })
      failing = true
      decisions.inc({ outcome: 'error' })
      await next()
      return
    }
    if (!decision.allowed) {
      if (refusedUntil.size >= REFUSED_MAX) refusedUntil.clear()
      refusedUntil.set(key, Date.now() + decision.retryAfterMs)
      return refuse(c, decision.retryAfterMs)
    }
    decisions.inc({ outcome: 'allowed' })
    await next()
  }
}
