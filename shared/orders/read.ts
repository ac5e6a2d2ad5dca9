import { and, asc, desc, eq, inArray, lt } from 'drizzle-orm'
import { orderLines, orders } from '../db/schema'
import type { Deps } from '../deps'
import { AppError } from '../errors'
import { type Order, readOrder, toOrder } from './order'

type Caller = { userId: number; role: 'user' | 'admin' }

/** Reading orders: what order-get and user-orders-list use, without the machinery that places them. */
export function createOrderReader(deps: Pick<Deps, 'db'>) {
  const { db } = deps
  return {
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
