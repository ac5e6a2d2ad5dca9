import { sql } from 'drizzle-orm'
import { type Db, poolOf } from '../db/client'
import { processedEvents } from '../db/schema'
import { sqlText } from '../db/sql-text'
import { inSqlTransaction } from '../db/transaction'
import type { ValidEventEnvelope } from '../events/schema'
import { businessDay } from './business-day'

/** The statistics consumer's name in processed_events. */
export const STATISTICS_CONSUMER = 'statistics'

/** Some event of the batch was recorded before (or twice in it): the batch is applied event by event. */
class SeenBefore extends Error {
  override name = 'SeenBefore'
}

/**
 * Applies order events to the per-day, per-product sales aggregates, each exactly once: an event's id
 * goes into processed_events in the same transaction as the aggregate update, so a redelivery finds it
 * and changes nothing. A batch (the events delivered together) is one transaction of two round trips:
 * one multi-row INSERT IGNORE of the ids, then one upsert of the new events' sums per day and product,
 * in (day, product id) order, so that concurrent consumers lock the aggregate rows in the same order,
 * with COMMIT. When the INSERT took fewer rows than the batch has events (a redelivery: rare), it does
 * not say which were new, so that transaction is rolled back and the batch runs again with one
 * INSERT IGNORE per id, each of which says whether its event is new.
 *
 * Both events count on the business day the order was paid: a cancellation takes back what its
 * completion added to that same day, so the 3-day popular window never holds a sale whose cancellation
 * was booked elsewhere. Addition commutes, so the two may arrive in either order (from two queues). Revenue
 * is the lines' gross (unit price × quantity), before order-level coupon discounts, which have no
 * per-product share.
 */
export async function applyOrderEvents(
  db: Db,
  timeZone: string,
  events: ValidEventEnvelope[],
): Promise<Array<'applied' | 'duplicate'>> {
  try {
    return await applyBatch(db, timeZone, events, true)
  } catch (error) {
    if (!(error instanceof SeenBefore)) throw error
    return applyBatch(db, timeZone, events, false)
  }
}

function applyBatch(
  db: Db,
  timeZone: string,
  events: ValidEventEnvelope[],
  together: boolean,
): Promise<Array<'applied' | 'duplicate'>> {
  return inSqlTransaction(poolOf(db), async (session) => {
    const now = sqlText('?', [new Date()])
    const consumer = sqlText('?', [STATISTICS_CONSUMER])
    const row = (event: ValidEventEnvelope) => `(${consumer}, ${sqlText('?', [event.eventId])}, ${now})`
    const insert = 'INSERT IGNORE INTO processed_events (consumer, event_id, processed_at) VALUES '
    let applied: boolean[]
    if (together) {
      const recorded = (await session.query(`${insert}${events.map(row).join(', ')}`)) as {
        affectedRows: number
      }
      if (recorded.affectedRows !== events.length) throw new SeenBefore()
      applied = events.map(() => true)
    } else {
      const recorded = (await session.query(events.map((event) => `${insert}${row(event)}`).join(';'))) as
        | { affectedRows: number }
        | Array<{ affectedRows: number }>
      applied = (Array.isArray(recorded) ? recorded : [recorded]).map((r) => r.affectedRows === 1)
    }
    const sums = new Map<string, { day: string; productId: number; quantity: number; revenue: number }>()
    for (const [i, event] of events.entries()) {
      if (!applied[i]) continue
      const day = businessDay(new Date(event.data.paidAt), timeZone)
      const sign = event.type === 'order.completed' ? 1 : -1
      for (const line of event.data.items) {
        const key = `${day} ${line.productId}`
        const sum = sums.get(key) ?? { day, productId: line.productId, quantity: 0, revenue: 0 }
        sum.quantity += sign * line.quantity
        sum.revenue += sign * line.quantity * line.unitPrice
        sums.set(key, sum)
      }
    }
    const rows = [...sums.values()].sort((a, b) =>
      a.day === b.day ? a.productId - b.productId : a.day < b.day ? -1 : 1,
    )
    await session.commit(
      rows.length === 0
        ? ''
        : sqlText(
            'INSERT INTO daily_product_sales (day, product_id, sold_quantity, revenue) VALUES ? ' +
              'ON DUPLICATE KEY UPDATE sold_quantity = sold_quantity + VALUES(sold_quantity), revenue = revenue + VALUES(revenue)',
            [rows.map((r) => [r.day, r.productId, r.quantity, r.revenue])],
          ),
    )
    return applied.map((isNew) => (isNew ? 'applied' : 'duplicate'))
  })
}

/** One event: see applyOrderEvents. */
export async function applyOrderEvent(
  db: Db,
  timeZone: string,
  event: ValidEventEnvelope,
): Promise<'applied' | 'duplicate'> {
  const [outcome] = await applyOrderEvents(db, timeZone, [event])
  return outcome ?? 'duplicate'
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
