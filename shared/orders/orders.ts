import { and, asc, desc, eq, inArray, lt, sql } from 'drizzle-orm'
import { pay, refund } from '../balance/balance'
import { createStockGate } from '../catalog/stock-gate'
import { couponTermsFor, releaseCoupon, useCoupon } from '../coupons/usage'
import type { DbOrTx, Tx } from '../db/client'
import { orderLines, orders, products } from '../db/schema'
import { inTransaction } from '../db/transaction'
import type { Deps } from '../deps'
import { AppError } from '../errors'
import { type OrderEventData, writeOutboxEvent } from '../events/outbox'
import { noKey, type RecordEffect } from '../idempotency/idempotency'
import { discountFor, priceLines } from './pricing'

export type OrderLine = {
  productId: number
  name: string
  unitPrice: number
  quantity: number
  lineTotal: number
}
export type Order = {
  id: number
  userId: number
  status: 'PAID' | 'CANCELLED'
  items: OrderLine[]
  subtotal: number
  discount: number
  total: number
  userCouponId: number | null
  createdAt: string
  paidAt: string
  cancelledAt?: string
}

export type OrderDeps = Pick<Deps, 'db' | 'redis' | 'logger' | 'metrics' | 'outbox'>
export type PlaceOrderInput = {
  items: Array<{ productId: number; quantity: number }>
  userCouponId?: number | undefined
}
type Caller = { userId: number; role: 'user' | 'admin' }

class StockRefused extends AppError {
  constructor(readonly productId: number) {
    super('INSUFFICIENT_STOCK', `Not enough stock of product ${productId} for this order`)
  }
}

async function readOrder(db: DbOrTx, orderId: number): Promise<Order | undefined> {
  const [row] = await db.select().from(orders).where(eq(orders.id, orderId))
  if (!row) return undefined
  const lines = await db
    .select()
    .from(orderLines)
    .where(eq(orderLines.orderId, orderId))
    .orderBy(asc(orderLines.productId))
  return toOrder(row, lines)
}

function toOrder(row: typeof orders.$inferSelect, lines: Array<typeof orderLines.$inferSelect>): Order {
  return {
    id: row.id,
    userId: row.userId,
    status: row.status,
    items: lines.map((line) => ({
      productId: line.productId,
      name: line.name,
      unitPrice: line.unitPrice,
      quantity: line.quantity,
      lineTotal: line.lineTotal,
    })),
    subtotal: row.subtotal,
    discount: row.discount,
    total: row.total,
    userCouponId: row.userCouponId,
    createdAt: row.createdAt.toISOString(),
    paidAt: row.paidAt.toISOString(),
    ...(row.cancelledAt ? { cancelledAt: row.cancelledAt.toISOString() } : {}),
  }
}

const eventData = (order: Order): OrderEventData => ({
  orderId: order.id,
  userId: order.userId,
  status: order.status,
  items: order.items.map(({ productId, quantity, unitPrice }) => ({ productId, quantity, unitPrice })),
  subtotal: order.subtotal,
  discount: order.discount,
  total: order.total,
  userCouponId: order.userCouponId,
  paidAt: order.paidAt,
  ...(order.cancelledAt ? { cancelledAt: order.cancelledAt } : {}),
})

/** Adds or removes stock in ascending product id, the one lock order every transaction here follows. */
async function moveStock(
  tx: Tx,
  lines: Array<{ productId: number; quantity: number }>,
  direction: 'take' | 'give',
) {
  const sorted = [...lines].sort((a, b) => a.productId - b.productId)
  for (const line of sorted) {
    if (direction === 'give') {
      await tx
        .update(products)
        .set({ stock: sql`${products.stock} + ${line.quantity}` })
        .where(eq(products.id, line.productId))
      continue
    }
    const [result] = await tx
      .update(products)
      .set({ stock: sql`${products.stock} - ${line.quantity}` })
      .where(and(eq(products.id, line.productId), sql`${products.stock} >= ${line.quantity}`))
    if (result.affectedRows !== 1) throw new StockRefused(line.productId)
  }
}

export type OrderOptions = {
  /** The Redis shield for sold-out products (on by default; `npm run bench` measures it off and on). */
  stockGate?: boolean
}

export function createOrders(deps: OrderDeps, options: OrderOptions = {}) {
  const { db } = deps
  const gate = createStockGate(deps.redis, deps.logger, { enabled: options.stockGate ?? true })
  const onRetry = (operation: string) => () => deps.metrics.transactionRetries.inc({ operation })

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

  /**
   * One transaction, in the lock order every transaction here follows (user coupon, balance, products
   * by ascending id). Statement order is chosen for flash sales: everything that cannot conflict on a
   * hot product comes first, and the guarded stock UPDATEs come last, so a hot product's row lock is
   * held only from its UPDATE to COMMIT. See docs/orders.md.
   */
  const placeInTransaction = async (tx: Tx, userId: number, input: PlaceOrderInput, now: Date) => {
    const ids = input.items.map((item) => item.productId)
    const found = await tx
      .select({ id: products.id, name: products.name, price: products.price })
      .from(products)
      .where(inArray(products.id, ids))
    const byId = new Map(found.map((p) => [p.id, p]))
    const missing = ids.find((id) => !byId.has(id))
    if (missing !== undefined) throw new AppError('PRODUCT_NOT_FOUND', `Product ${missing} does not exist`)

    const priced = priceLines(
      input.items.map((item) => {
        const product = byId.get(item.productId)
        if (!product) throw new AppError('PRODUCT_NOT_FOUND', `Product ${item.productId} does not exist`)
        return {
          productId: item.productId,
          name: product.name,
          unitPrice: product.price,
          quantity: item.quantity,
        }
      }),
    )
    const coupon =
      input.userCouponId === undefined
        ? null
        : await couponTermsFor(tx, {
            userCouponId: input.userCouponId,
            userId,
            subtotal: priced.subtotal,
            now,
          })
    const discount = discountFor(priced.subtotal, coupon)
    const total = priced.subtotal - discount

    const [created] = await tx
      .insert(orders)
      .values({
        userId,
        status: 'PAID',
        subtotal: priced.subtotal,
        discount,
        total,
        userCouponId: input.userCouponId ?? null,
        createdAt: now,
        paidAt: now,
      })
      .$returningId()
    if (!created) throw new Error('order insert returned no id')
    const orderId = created.id
    await tx.insert(orderLines).values(priced.lines.map((line) => ({ ...line, orderId })))
    if (input.userCouponId !== undefined) {
      await useCoupon(tx, { userCouponId: input.userCouponId, userId, orderId, now })
    }
    await pay(tx, userId, total, orderId, now)
    const order: Order = {
      id: orderId,
      userId,
      status: 'PAID',
      items: [...priced.lines].sort((a, b) => a.productId - b.productId),
      subtotal: priced.subtotal,
      discount,
      total,
      userCouponId: input.userCouponId ?? null,
      createdAt: now.toISOString(),
      paidAt: now.toISOString(),
    }
    const event = await writeOutboxEvent(tx, 'order.completed', eventData(order), now)
    await moveStock(tx, input.items, 'take')
    return { order, eventId: event.eventId }
  }

  const placeOrder = async (caller: Caller, input: PlaceOrderInput, record: RecordEffect): Promise<Order> => {
    const refusedByGate = await gate.refuses(input.items)
    if (refusedByGate) {
      throw new AppError(
        'INSUFFICIENT_STOCK',
        `Not enough stock of product ${refusedByGate.productId} for this order`,
      )
    }
    let eventId: string | undefined
    try {
      const order = await inTransaction(
        db,
        async (tx) => {
          const placed = await placeInTransaction(tx, caller.userId, input, new Date())
          await record(tx, placed.order)
          eventId = placed.eventId
          return placed.order
        },
        { onRetry: onRetry('order-create') },
      )
      if (eventId) await notify(eventId)
      return order
    } catch (error) {
      if (error instanceof StockRefused) {
        const [row] = await db
          .select({ stock: products.stock })
          .from(products)
          .where(eq(products.id, error.productId))
        if (row) await gate.remember(error.productId, row.stock)
      }
      throw error
    }
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
        await moveStock(tx, order.items, 'give')
        await record(tx, order)
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

    /** The order, for its owner or an admin; anyone else gets 404 (ids are not probeable). */
    async get(caller: Caller, orderId: number): Promise<Order> {
      const order = await readOrder(db, orderId)
      if (!order || (caller.role !== 'admin' && order.userId !== caller.userId)) {
        throw new AppError('ORDER_NOT_FOUND', `Order ${orderId} does not exist`)
      }
      return order
    },

    /** A user's orders, newest first, from the primary (a user sees their own order at once). */
    async listForUser(userId: number, page: { limit: number; cursor?: number | undefined }) {
      const rows = await db
        .select()
        .from(orders)
        .where(
          and(eq(orders.userId, userId), page.cursor === undefined ? undefined : lt(orders.id, page.cursor)),
        )
        .orderBy(desc(orders.id))
        .limit(page.limit + 1)
      const ids = rows.map((row) => row.id)
      const lines =
        ids.length === 0
          ? []
          : await db
              .select()
              .from(orderLines)
              .where(inArray(orderLines.orderId, ids))
              .orderBy(asc(orderLines.productId))
      return rows.map((row) => ({
        row,
        order: toOrder(
          row,
          lines.filter((line) => line.orderId === row.id),
        ),
      }))
    },
  }
}
