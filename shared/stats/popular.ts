import { asc, between, desc, eq, sql } from 'drizzle-orm'
import { createCache } from '../cache/cache-aside'
import type { Db } from '../db/client'
import { dailyProductSales, products } from '../db/schema'
import type { Deps } from '../deps'
import { addDays, businessDay } from './business-day'

export const POPULAR_LIMIT = 5
/** Today and the two business days before it (docs/api.md). */
export const POPULAR_WINDOW_DAYS = 3
/** The fallback copy outlives the cache by far: it is what answers while the statistics store is down. */
const LAST_GOOD_TTL_SECONDS = 7 * 24 * 3600
const LAST_GOOD_KEY = 'popular-products:last-good'

export type PopularItem = {
  rank: number
  productId: number
  name: string
  price: number
  soldQuantity: number
}
/** `from` and `to` are business dates (YYYY-MM-DD in BUSINESS_TIMEZONE), both included. */
export type PopularProducts = { from: string; to: string; items: PopularItem[] }

export function popularWindow(now: Date, timeZone: string): { from: string; to: string } {
  const to = businessDay(now, timeZone)
  return { from: addDays(to, -(POPULAR_WINDOW_DAYS - 1)), to }
}

/**
 * The best sellers of the window from the pre-aggregated daily sales (never a scan of order lines):
 * most units first, then more revenue, then the lower product id. Name and price are the product's
 * current ones. A product whose cancellations took its count to zero is not listed.
 */
export async function topSellingProducts(
  db: Db,
  window: { from: string; to: string },
  limit = POPULAR_LIMIT,
): Promise<PopularProducts> {
  const sold = sql<number>`SUM(${dailyProductSales.soldQuantity})`.mapWith(Number)
  const revenue = sql<number>`SUM(${dailyProductSales.revenue})`.mapWith(Number)
  const rows = await db
    .select({
      productId: dailyProductSales.productId,
      name: products.name,
      price: products.price,
      soldQuantity: sold,
    })
    .from(dailyProductSales)
    .innerJoin(products, eq(products.id, dailyProductSales.productId))
    .where(between(dailyProductSales.day, window.from, window.to))
    .groupBy(dailyProductSales.productId, products.name, products.price)
    .having(sql`${sold} > 0`)
    .orderBy(desc(sold), desc(revenue), asc(dailyProductSales.productId))
    .limit(limit)
  return { ...window, items: rows.map((row, i) => ({ rank: i + 1, ...row })) }
}

export type PopularDeps = Pick<Deps, 'dbRead' | 'redis' | 'metrics' | 'logger' | 'config'>

/**
 * The popular list as served: cached in Redis for POPULAR_CACHE_TTL_SECONDS per business day, read from
 * the replica on a miss. It never fails: when the statistics store (or Redis with it) cannot answer, it
 * serves the last list computed successfully (kept in Redis for a week and in this process's memory),
 * and an empty list when there is none.
 */
export function createPopularProducts(deps: PopularDeps, options: { now?: () => Date } = {}) {
  const { redis, metrics, logger, config } = deps
  const now = options.now ?? (() => new Date())
  const cache = createCache<PopularProducts>({
    ...deps,
    name: 'popular-products',
    ttlMs: config.popularCacheTtlSeconds * 1000,
  })
  let lastGood: PopularProducts | undefined

  const load = async (window: { from: string; to: string }) => {
    const value = await topSellingProducts(deps.dbRead, window)
    await redis
      .set(LAST_GOOD_KEY, JSON.stringify(value), 'EX', LAST_GOOD_TTL_SECONDS)
      .catch((error: unknown) => logger.warn('could not keep the popular list for fallback', { error }))
    return value
  }

  const fallback = async (): Promise<PopularProducts | undefined> => {
    try {
      const stored = await redis.get(LAST_GOOD_KEY)
      if (stored !== null) return JSON.parse(stored) as PopularProducts
    } catch {
      // Redis is down too: this process's own copy is all there is.
    }
    return lastGood
  }

  return {
    async get(): Promise<PopularProducts> {
      const window = popularWindow(now(), config.businessTimeZone)
      try {
        const value = await cache.get(window.to, () => load(window))
        if (value !== null) {
          lastGood = value
          return value
        }
      } catch (error) {
        logger.warn('popular products unavailable; serving the last good list', { error })
      }
      metrics.cache.inc({ cache: 'popular-products', outcome: 'fallback' })
      return (await fallback()) ?? { ...window, items: [] }
    },
  }
}
