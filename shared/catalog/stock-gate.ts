import type { Logger } from '../logger'
import type { Redis } from '../redis/client'

/** How long a refusal shields MySQL; short, so that a restock nobody told us about shows within a second. */
export const STOCK_GATE_MS = 1_000

const key = (productId: number) => `stock-gate:${productId}`

/**
 * A shield for sold-out products during a flash sale. When MySQL refuses an order line for lack of stock,
 * the stock MySQL then had is remembered for STOCK_GATE_MS; orders asking for more than that are turned
 * away at Redis speed. The gate can only refuse what MySQL just refused: it never admits anything on its
 * own (MySQL's guarded UPDATE still decides every sale), restocks clear it, and a Redis failure opens it.
 */
export function createStockGate(
  redis: Redis,
  logger: Logger,
  options: { enabled: boolean } = { enabled: true },
) {
  return {
    /** The first line the gate refuses, or undefined to let MySQL decide. */
    async refuses<L extends { productId: number; quantity: number }>(lines: L[]): Promise<L | undefined> {
      if (!options.enabled) return undefined
      try {
        const seen = await redis.mget(lines.map((line) => key(line.productId)))
        return lines.find((line, i) => {
          const stock = seen[i]
          return stock !== null && stock !== undefined && Number(stock) < line.quantity
        })
      } catch (error) {
        logger.warn('stock gate unavailable; MySQL decides alone', { error })
        return undefined
      }
    },

    async remember(productId: number, stock: number): Promise<void> {
      await redis.set(key(productId), String(stock), 'PX', STOCK_GATE_MS).catch(() => undefined)
    },

    /** After anything that adds stock (cancel, admin adjustment). */
    async clear(productIds: number[]): Promise<void> {
      if (productIds.length === 0) return
      await redis.del(...productIds.map(key)).catch((error: unknown) => {
        logger.warn('stock gate not cleared; it expires within a second', { error })
      })
    },
  }
}
