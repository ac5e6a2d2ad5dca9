import { and, eq, sql } from 'drizzle-orm'
import { refund } from '../balance/balance'
import { createStockGate } from '../catalog/stock-gate'
import { createCombiner } from '../combiner'
import { releaseCoupon } from '../coupons/usage'
import { poolOf, type Tx } from '../db/client'
import { orders, products } from '../db/schema'
import { inTransaction } from '../db/transaction'
import type { Deps } from '../deps'
import { AppError } from '../errors'
import { writeOutboxEvent } from '../events/outbox'
import { noKey, type RecordEffect } from '../idempotency/idempotency'
import { eventData, type Order, type PlaceOrderInput, readOrder } from './order'
import { type PlacementOutcome, type PlacementRequest, placeBatch, StockRefused } from './placement'

export type { Order, OrderLine, PlaceOrderInput } from './order'

export type OrderDeps = Pick<Deps, 'db' | 'redis' | 'logger' | 'metrics' | 'outbox' | 'once'>
export type Caller = { userId: number; role: 'user' | 'admin' }

/** Gives a cancelled order's stock back in ascending product id, the one lock order of every transaction. */
async function restock(tx: Tx, lines: Array<{ productId: number; quantity: number }>) {
  for (const line of [...lines].sort((a, b) => a.productId - b.productId)) {
    await tx
      .update(products)
      .set({ stock: sql`${products.stock} + ${line.quantity}` })
      .where(eq(products.id, line.productId))
  }
}

export type OrderOptions = {
  /** The Redis shield for sold-out products (on by default; `npm run bench` measures it off and on). */
  stockGate?: boolean
}

/** Orders placed together at most (docs/orders.md, group commit). */
export const MAX_BATCH = 64
/**
 * Batches in flight at once per process: more overlap one batch's round trips with another's work (and
 * unrelated orders' transactions run side by side); on a hot product they queue on its row in MySQL.
 */
export const BATCHES_IN_FLIGHT = 4

export function createOrders(deps: OrderDeps, options: OrderOptions = {}) {
  const { db } = deps
  const gate = createStockGate(deps.redis, deps.logger, { enabled: options.stockGate ?? true })
  const onRetry = (operation: string) => () => deps.metrics.transactionRetries.inc({ operation })
  // One per process, shared by every app that places orders in it, so that their orders batch together.
  const combiner = deps.once('order-combiner', () => {
    const pool = poolOf(db)
    const retried = onRetry('order-create')
    return createCombiner<PlacementRequest, PlacementOutcome>(
      (batch) => placeBatch(pool, batch, { onRetry: retried }),
      {
        maxBatch: MAX_BATCH,
        concurrency: BATCHES_IN_FLIGHT,
        onBatch: (size) => deps.metrics.orderBatchSize.observe(size),
      },
    )
  })

  /** Counts each placement or cancel by outcome: the error code of a refusal, `failed` for a 5xx. */
  const counted = async <T>(operation: 'place' | 'cancel', success: string, run: () => Promise<T>) => {
    try {
      const result = await run()
      deps.metrics.orders.inc({ operation, outcome: success })
      return result
    } catch (error) {
      const outcome = error instanceof AppError && error.status < 500 ? error.code.toLowerCase() : 'failed'
      deps.metrics.orders.inc({ operation, outcome })
      throw error
    }
  }

  const notify = async (eventId: string) => {
    try {
      await deps.outbox.notify()
    } catch (error) {
      deps.logger.warn('outbox relay not woken; its sweeper will publish the event', { eventId, error })
    }
  }

  const placeOrder = async (caller: Caller, input: PlaceOrderInput, record: RecordEffect): Promise<Order> => {
    const refusedByGate = await gate.refuses(input.items)
    if (refusedByGate) {
      throw new AppError(
        'INSUFFICIENT_STOCK',
        `Not enough stock of product ${refusedByGate.productId} for this order`,
      )
    }
    const outcome = await combiner.submit({ userId: caller.userId, input, record })
    if ('error' in outcome) {
      if (outcome.error instanceof StockRefused)
        await gate.remember(outcome.error.productId, outcome.error.left)
      throw outcome.error
    }
    await notify(outcome.eventId)
    return outcome.order
  }

  const cancelOrder = async (caller: Caller, orderId: number, record: RecordEffect): Promise<Order> => {
    let eventId: string | undefined
    let restocked: number[] = []
    const cancelled = await inTransaction(
      db,
      async (tx) => {
        const now = new Date()
        const [flipped] = await tx
          .update(orders)
          .set({ status: 'CANCELLED', cancelledAt: now })
          .where(
            and(
              eq(orders.id, orderId),
              eq(orders.status, 'PAID'),
              caller.role === 'admin' ? undefined : eq(orders.userId, caller.userId),
            ),
          )
        const order = await readOrder(tx, orderId)
        if (!order || (caller.role !== 'admin' && order.userId !== caller.userId)) {
          throw new AppError('ORDER_NOT_FOUND', `Order ${orderId} does not exist`)
        }
        if (flipped.affectedRows !== 1) {
          throw new AppError('ORDER_NOT_CANCELLABLE', `Order ${orderId} is ${order.status}, not PAID`)
        }
        if (order.userCouponId !== null)
          await releaseCoupon(tx, { userCouponId: order.userCouponId, orderId })
        await refund(tx, order.userId, order.total, orderId, now)
        const event = await writeOutboxEvent(tx, 'order.cancelled', eventData(order), now)
        await restock(tx, order.items)
        await record.insert(tx, order)
        eventId = event.eventId
        restocked = order.items.map((item) => item.productId)
        return order
      },
      { onRetry: onRetry('order-cancel') },
    )
    await gate.clear(restocked)
    if (eventId) await notify(eventId)
    return cancelled
  }

  return {
    /** Places and pays an order (docs/api.md, Orders); `record` stores its Idempotency-Key with it. */
    place: (caller: Caller, input: PlaceOrderInput, record: RecordEffect = noKey) =>
      counted('place', 'placed', () => placeOrder(caller, input, record)),

    /**
     * Cancels a PAID order: the status flip is guarded in SQL, so of concurrent cancels exactly one
     * proceeds; the refund, the coupon, the stock and the event follow in the same transaction.
     */
    cancel: (caller: Caller, orderId: number, record: RecordEffect = noKey) =>
      counted('cancel', 'cancelled', () => cancelOrder(caller, orderId, record)),
  }
}
