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
  // The lookups of one event-loop turn share one MGET: a burst of orders costs Redis one command, and
  // this process one reply to decode, instead of one per order.
  let pending: { keys: Map<string, number>; values: Promise<Array<string | null>> } | undefined
  const lookUp = (keys: string[]) => {
    if (pending === undefined) {
      const turn = { keys: new Map<string, number>(), values: Promise.resolve<Array<string | null>>([]) }
      turn.values = new Promise((resolve) => setImmediate(resolve)).then(() => {
        pending = undefined
        return redis.mget([...turn.keys.keys()])
      })
      pending = turn
    }
    const turn = pending
    const at = keys.map((k) => {
      let i = turn.keys.get(k)
      if (i === undefined) {
        i = turn.keys.size
        turn.keys.set(k, i)
      }
      return i
    })
    return turn.values.then((values) => at.map((i) => values[i]))
  }

  return {
    /** The first line the gate refuses, or undefined to let MySQL decide. */
    async refuses<L extends { productId: number; quantity: number }>(lines: L[]): Promise<L | undefined> {
      if (!options.enabled) return undefined
      try {
        const seen = await lookUp(lines.map((line) => key(line.productId)))
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
