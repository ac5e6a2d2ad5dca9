import { randomUUID } from 'node:crypto'
import type { Logger } from '../logger'
import type { Metrics } from '../metrics'
import type { Redis } from '../redis/client'

export type CacheOptions = {
  redis: Redis
  metrics: Metrics
  logger: Logger
  /** Label for metrics and the key prefix, e.g. `product-info`. */
  name: string
  ttlMs: number
  /** How long a cross-process loader may hold the key's lock before others load themselves. */
  lockMs?: number
}

/** A value and how much longer the shared tier keeps it. */
export type Entry<T> = { value: T; ttlMs: number }

/** Marks a failure of the source of truth, so that it is not mistaken for a Redis failure and retried. */
class SourceError extends Error {}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Cache-aside over Redis with stampede protection: one loader per key in this process (shared promise)
 * and one across processes (a short Redis lock; the others poll briefly for the value). When Redis fails,
 * every call loads from the source of truth instead: slower, never wrong, never an error.
 */
export function createCache<T>(options: CacheOptions) {
  const { redis, metrics, logger, name, ttlMs } = options
  const lockMs = options.lockMs ?? 2_000
  const inflight = new Map<string, Promise<Entry<T | null>>>()
  const valueKey = (key: string) => `cache:${name}:${key}`
  const generationKey = (key: string) => `cache:${name}:${key}:gen`
  const lockKey = (key: string) => `cache:${name}:${key}:lock`

  const count = (outcome: 'hit' | 'miss' | 'error') => metrics.cache.inc({ cache: name, outcome })

  /** The value and how long Redis keeps it still (the two commands travel in one write). */
  const read = async (key: string): Promise<Entry<T> | undefined> => {
    const [cached, pttl] = await Promise.all([redis.get(valueKey(key)), redis.pttl(valueKey(key))])
    return cached === null ? undefined : { value: JSON.parse(cached) as T, ttlMs: Math.max(pttl, 0) }
  }

  const loadAndStore = async (key: string, load: () => Promise<T | null>): Promise<Entry<T | null>> => {
    const token = randomUUID()
    const locked = (await redis.set(lockKey(key), token, 'PX', lockMs, 'NX')) === 'OK'
    if (!locked) {
      // Another process is loading this key: wait a little for its value before loading ourselves.
      for (let waited = 0; waited < lockMs; waited += 25) {
        await sleep(25)
        const cached = await read(key)
        if (cached !== undefined) return cached
      }
    }
    try {
      const generation = (await redis.get(generationKey(key))) ?? ''
      metrics.cacheLoads.inc({ cache: name })
      const value = await load().catch((error: unknown) => {
        throw new SourceError('load failed', { cause: error })
      })
      // Only if no invalidation happened since the generation was read: a loader that read the row before
      // an update committed must not put that old row back after the update's invalidation.
      if (value !== null) {
        await redis.setIfGeneration(
          valueKey(key),
          generationKey(key),
          generation,
          JSON.stringify(value),
          ttlMs,
        )
      }
      return { value, ttlMs }
    } finally {
      if (locked) await redis.deleteIfEquals(lockKey(key), token).catch(() => undefined)
    }
  }

  const getThroughRedis = async (key: string, load: () => Promise<T | null>): Promise<Entry<T | null>> => {
    const cached = await read(key)
    if (cached !== undefined) {
      count('hit')
      return cached
    }
    count('miss')
    return loadAndStore(key, load)
  }

  /** The value with how long it may still be served (0 when it came from the source with Redis down). */
  const getEntry = async (key: string, load: () => Promise<T | null>): Promise<Entry<T | null>> => {
    const running = inflight.get(key)
    if (running !== undefined) return running
    const attempt = getThroughRedis(key, load).catch(async (error: unknown) => {
      if (error instanceof SourceError) throw error.cause
      count('error')
      logger.warn('cache unavailable, reading the source of truth', { cache: name, error })
      metrics.cacheLoads.inc({ cache: name })
      return { value: await load(), ttlMs: 0 }
    })
    inflight.set(key, attempt)
    try {
      return await attempt
    } finally {
      inflight.delete(key)
    }
  }

  return {
    name,
    getEntry,

    /** The cached value, or what `load` returns (null: nothing there, not cached). */
    async get(key: string, load: () => Promise<T | null>): Promise<T | null> {
      return (await getEntry(key, load)).value
    },

    /** Drops the value and bumps the generation, so no loader that started earlier can put old data back. */
    async invalidate(key: string): Promise<void> {
      await redis
        .multi()
        .incr(generationKey(key))
        .pexpire(generationKey(key), ttlMs + 60_000)
        .del(valueKey(key))
        .exec()
    },
  }
}

export type Cache<T> = ReturnType<typeof createCache<T>>
