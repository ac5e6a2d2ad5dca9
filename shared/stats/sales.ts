import { sql } from 'drizzle-orm'
import type { Db } from '../db/client'
import { dailyProductSales, processedEvents } from '../db/schema'
import { inTransaction } from '../db/transaction'
import type { ValidEventEnvelope } from '../events/schema'
import { businessDay } from './business-day'

/** The statistics consumer's name in processed_events. */
export const STATISTICS_CONSUMER = 'statistics'

/**
 * Applies one order event to the per-day, per-product sales aggregates, exactly once: the event id goes
 * into processed_events in the same transaction as the aggregate update, so a redelivery finds it and
 * changes nothing.
 *
 * Both events count on the business day the order was paid: a cancellation takes back what its
 * completion added to that same day, so the 3-day popular window never holds a sale whose cancellation
 * was booked elsewhere. Addition commutes, so the two may arrive in either order (from two queues). Revenue
 * is the lines' gross (unit price × quantity), before order-level coupon discounts, which have no
 * per-product share.
 */
export async function applyOrderEvent(
  db: Db,
  timeZone: string,
  event: ValidEventEnvelope,
): Promise<'applied' | 'duplicate'> {
  const day = businessDay(new Date(event.data.paidAt), timeZone)
  const sign = event.type === 'order.completed' ? 1 : -1
  // Rows in product id order: concurrent events touching the same products lock them in the same order.
  const rows = [...event.data.items]
    .sort((a, b) => a.productId - b.productId)
    .map((line) => ({
      day,
      productId: line.productId,
      soldQuantity: sign * line.quantity,
      revenue: sign * line.quantity * line.unitPrice,
    }))
  return inTransaction(db, async (tx) => {
    const [recorded] = await tx
      .insert(processedEvents)
      .ignore()
      .values({ consumer: STATISTICS_CONSUMER, eventId: event.eventId, processedAt: new Date() })
    if (recorded.affectedRows === 0) return 'duplicate'
    await tx
      .insert(dailyProductSales)
      .values(rows)
      .onDuplicateKeyUpdate({
        set: {
          soldQuantity: sql`${dailyProductSales.soldQuantity} + VALUES(${sql.identifier('sold_quantity')})`,
          revenue: sql`${dailyProductSales.revenue} + VALUES(${sql.identifier('revenue')})`,
        },
      })
    return 'applied'
  })
}

/**
 * How long an applied event id is remembered. Far longer than the outbox keeps published rows (7 days),
 * so no redelivery the relay can cause is ever applied twice; an operator replaying a dead-lettered
 * message older than this must check processed_events by hand.
 */
export const PROCESSED_EVENT_RETENTION_MS = 30 * 24 * 3600 * 1000

/** Forgets applied event ids older than the retention, in batches; returns how many rows went. */
export async function purgeProcessedEvents(db: Db, now = new Date(), batch = 1_000): Promise<number> {
  const before = new Date(now.getTime() - PROCESSED_EVENT_RETENTION_MS)
  let total = 0
  for (;;) {
    const [result] = await db.execute(
      sql`DELETE FROM ${processedEvents} WHERE ${processedEvents.processedAt} < ${before} LIMIT ${batch}`,
    )
    const affected = (result as { affectedRows?: number }).affectedRows ?? 0
    total += affected
    if (affected < batch) return total
  }
}
