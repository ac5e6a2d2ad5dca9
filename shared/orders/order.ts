import { asc, eq } from 'drizzle-orm'
import type { DbOrTx } from '../db/client'
import { orderLines, orders } from '../db/schema'
import type { OrderEventData } from '../events/outbox'

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

export type PlaceOrderInput = {
  items: Array<{ productId: number; quantity: number }>
  userCouponId?: number | undefined
}

export const eventData = (order: Order): OrderEventData => ({
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

export async function readOrder(db: DbOrTx, orderId: number): Promise<Order | undefined> {
  const [row] = await db.select().from(orders).where(eq(orders.id, orderId))
  if (!row) return undefined
  const lines = await db
    .select()
    .from(orderLines)
    .where(eq(orderLines.orderId, orderId))
    .orderBy(asc(orderLines.productId))
  return toOrder(row, lines)
}

export function toOrder(
  row: typeof orders.$inferSelect,
  lines: Array<typeof orderLines.$inferSelect>,
): Order {
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
