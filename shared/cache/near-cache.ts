import type { Metrics } from '../metrics'
import type { Cache } from './cache-aside'
import type { InvalidationBus } from './invalidation-bus'

export type NearCacheOptions<T> = {
  /** The shared tier (Redis, cache-aside with stampede protection across processes). */
  shared: Cache<T>
  bus: InvalidationBus
  metrics: Metrics
  /** How long a value may be served from memory, at most: never longer than the shared tier keeps it. */
  memoryTtlMs: number
  /** Entries kept in memory; the oldest go first. */
  maxEntries?: number
}

type Held<T> = { value: T; until: number }

/**
 * A near cache: values held in this process's memory in front of the shared Redis tier, so a hit costs
 * no network round trip. Invalidation is cross-process over the bus (pub/sub): `invalidate` drops the
 * key from Redis (with the shared tier's generation guard), from this process, and from every other
 * process before it resolves (see InvalidationBus.publish). A value in memory never outlives its Redis
 * copy, and a load that raced an invalidation is not kept.
 */
export function createNearCache<T>(options: NearCacheOptions<T>) {
  const { shared, bus, metrics, memoryTtlMs } = options
  const maxEntries = options.maxEntries ?? 10_000
  const held = new Map<string, Held<T>>()
  /** Bumped by every invalidation this process hears of: a load that saw it change is not kept. */
  let epoch = 0
  const hits = metrics.cache.labels({ cache: shared.name, outcome: 'memory_hit' })

  const drop = (key: string) => {
    epoch++
    held.delete(key)
  }
  bus.subscribe(shared.name, {
    onKey: drop,
    onReset: () => {
      epoch++
      held.clear()
    },
  })

  const keep = (key: string, value: T, ttlMs: number) => {
    if (ttlMs <= 0) return
    if (held.size >= maxEntries) {
      const oldest = held.keys().next().value
      if (oldest !== undefined) held.delete(oldest)
    }
    held.set(key, { value, until: Date.now() + Math.min(ttlMs, memoryTtlMs) })
  }

  return {
    /** The value in memory, if it is there and fresh: no I/O, no promise. */
    peek(key: string): T | undefined {
      const entry = held.get(key)
      if (entry === undefined) return undefined
      if (entry.until <= Date.now()) {
        held.delete(key)
        return undefined
      }
      hits.inc()
      return entry.value
    },

    /** From memory, else from Redis, else what `load` returns (null: nothing there, not cached). */
    async get(key: string, load: () => Promise<T | null>): Promise<T | null> {
      const inMemory = this.peek(key)
      if (inMemory !== undefined) return inMemory
      const startedAt = epoch
      const entry = await shared.getEntry(key, load)
      if (entry.value !== null && epoch === startedAt) keep(key, entry.value, entry.ttlMs)
      return entry.value
    },

    /** Drops `key` from this process only (say, when the source shows it changed). */
    drop,

    /** Drops `key` everywhere: Redis, this process and every other one; resolves once they have it. */
    async invalidate(key: string): Promise<void> {
      drop(key)
      await shared.invalidate(key)
      await bus.publish(shared.name, key)
    },
  }
}

export type NearCache<T> = ReturnType<typeof createNearCache<T>>
