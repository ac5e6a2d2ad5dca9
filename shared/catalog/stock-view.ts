import { inArray } from 'drizzle-orm'
import type { Db } from '../db/client'
import { products } from '../db/schema'
import type { Logger } from '../logger'

export type StockViewOptions = {
  /** How often the stock of every product read lately is read again, in one query. */
  refreshMs?: number
  /** A stock older than this (counted from before the query that read it) is not served. */
  maxAgeMs?: number
  /** A product not read for this long is no longer refreshed. */
  idleMs?: number
  /** At most this many products are refreshed; the least recently read go first. */
  maxWatched?: number
  /** The row's updated_at moved: its cached info may be stale (an invalidation this process missed). */
  onUpdated?: (productId: number) => void
}

export const STOCK_VIEW_DEFAULTS = {
  refreshMs: 250,
  maxAgeMs: 750,
  idleMs: 10_000,
  maxWatched: 5_000,
} as const

type Seen = { stock: number; readAt: number; updatedAt: number; wantedAt: number }

/**
 * Stock as the product page shows it, at most `maxAgeMs` old (the contract allows 1 s), at a cost that
 * does not grow with the number of products or readers: every product read in the last `idleMs` is
 * refreshed by one `SELECT … WHERE id IN (…)` every `refreshMs`, and reads of a product that is not
 * fresh in memory wait for the next batch load, which serves every product asked for in the same turn of
 * the event loop with one query. From the primary, since a replica's lag could break the freshness.
 */
export function createStockView(db: Db, logger: Logger, options: StockViewOptions = {}) {
  const settings = { ...STOCK_VIEW_DEFAULTS, ...options }
  const seen = new Map<number, Seen>()
  type Waiter = { resolve(stock: number | null): void; reject(error: unknown): void }
  let waiting = new Map<number, Waiter[]>()
  let scheduled = false

  const read = async (ids: number[]) => {
    const readAt = Date.now()
    const rows = await db
      .select({ id: products.id, stock: products.stock, updatedAt: products.updatedAt })
      .from(products)
      .where(inArray(products.id, ids))
    const found = new Map<number, number>()
    for (const row of rows) {
      const updatedAt = row.updatedAt.getTime()
      const before = seen.get(row.id)
      if (before !== undefined && before.updatedAt !== updatedAt) settings.onUpdated?.(row.id)
      seen.set(row.id, { stock: row.stock, readAt, updatedAt, wantedAt: before?.wantedAt ?? readAt })
      found.set(row.id, row.stock)
    }
    return found
  }

  const loadWaiting = async () => {
    scheduled = false
    const batch = waiting
    waiting = new Map()
    try {
      const found = await read([...batch.keys()])
      for (const [id, waiters] of batch) for (const w of waiters) w.resolve(found.get(id) ?? null)
    } catch (error) {
      for (const waiters of batch.values()) for (const w of waiters) w.reject(error)
    }
  }

  const refresh = async () => {
    const now = Date.now()
    for (const [id, entry] of seen) if (now - entry.wantedAt > settings.idleMs) seen.delete(id)
    while (seen.size > settings.maxWatched) {
      const oldest = seen.keys().next().value
      if (oldest === undefined) break
      seen.delete(oldest)
    }
    if (seen.size > 0) await read([...seen.keys()])
  }

  let refreshing = false
  const timer = setInterval(() => {
    if (refreshing) return
    refreshing = true
    refresh()
      .catch((error: unknown) => logger.warn('stock refresh failed; reads load it themselves', { error }))
      .finally(() => {
        refreshing = false
      })
  }, settings.refreshMs)
  timer.unref()

  return {
    /** The stock, if a fresh one is in memory: no I/O, no promise. */
    peek(id: number): number | undefined {
      const entry = seen.get(id)
      if (entry === undefined) return undefined
      const now = Date.now()
      entry.wantedAt = now
      return now - entry.readAt < settings.maxAgeMs ? entry.stock : undefined
    },

    /** The stock at most maxAgeMs old; null when there is no such product. */
    get(id: number): Promise<number | null> {
      const fresh = this.peek(id)
      if (fresh !== undefined) return Promise.resolve(fresh)
      return new Promise((resolve, reject) => {
        const list = waiting.get(id)
        if (list) list.push({ resolve, reject })
        else waiting.set(id, [{ resolve, reject }])
        if (!scheduled) {
          scheduled = true
          setImmediate(() => void loadWaiting())
        }
      })
    },

    /** Forgets what this process knows of `id` (an update it made or heard of). */
    forget(id: number) {
      seen.delete(id)
    },

    close() {
      clearInterval(timer)
    },
  }
}

export type StockView = ReturnType<typeof createStockView>
