import { randomUUID } from 'node:crypto'
import mysql from 'mysql2/promise'
import type { Sample } from './load'

/** The service's pool size (shared/db/client.ts createDatabase's default). */
export const SERVICE_POOL_SIZE = 20

type Placement = { userId: number; productId: number }

/**
 * The ceiling of order placement: the same transaction as shared/orders/orders.ts placeInTransaction,
 * as raw mysql2 text-protocol statements in a tight loop, `concurrency` loops over a pool of the
 * service's size. It writes complete, consistent rows (order, line, payment and its ledger entry, outbox
 * event, stock), so checkInvariants holds for them too: proof that it does the same work.
 */
export function createRawOrders(databaseUrl: string) {
  const pool = mysql.createPool({
    uri: databaseUrl,
    connectionLimit: SERVICE_POOL_SIZE,
    maxIdle: SERVICE_POOL_SIZE,
    timezone: 'Z',
    supportBigNumbers: true,
    bigNumberStrings: false,
  })
  pool.pool.on('connection', (connection) => {
    connection.query("SET time_zone = '+00:00', innodb_lock_wait_timeout = 5", () => undefined)
  })

  const place = async ({ userId, productId }: Placement) => {
    const conn = await pool.getConnection()
    try {
      await conn.query('BEGIN')
      const now = new Date()
      const [found] = await conn.query<mysql.RowDataPacket[]>(
        'SELECT id, name, price FROM products WHERE id IN (?)',
        [[productId]],
      )
      const product = found[0]
      if (!product) throw new Error(`product ${productId} missing`)
      const price = Number(product.price)
      const [order] = await conn.query<mysql.ResultSetHeader>(
        "INSERT INTO orders (user_id, status, subtotal, discount, total, user_coupon_id, created_at, paid_at) VALUES (?, 'PAID', ?, 0, ?, NULL, ?, ?)",
        [userId, price, price, now, now],
      )
      const orderId = order.insertId
      await conn.query(
        'INSERT INTO order_lines (order_id, product_id, name, unit_price, quantity, line_total) VALUES (?, ?, ?, ?, 1, ?)',
        [orderId, productId, product.name, price, price],
      )
      const [paid] = await conn.query<mysql.ResultSetHeader>(
        'UPDATE balances SET balance = balance - ?, updated_at = ? WHERE user_id = ? AND balance >= ?',
        [price, now, userId, price],
      )
      if (paid.affectedRows !== 1) throw new Error('INSUFFICIENT_BALANCE')
      const [after] = await conn.query<mysql.RowDataPacket[]>(
        'SELECT balance FROM balances WHERE user_id = ?',
        [userId],
      )
      await conn.query(
        "INSERT INTO balance_ledger (user_id, type, amount, balance_after, order_id, created_at) VALUES (?, 'PAYMENT', ?, ?, ?, ?)",
        [userId, -price, after[0]?.balance, orderId, now],
      )
      const eventId = randomUUID()
      const payload = {
        eventId,
        type: 'order.completed',
        schemaVersion: 1,
        occurredAt: now.toISOString(),
        data: {
          orderId,
          userId,
          status: 'PAID',
          items: [{ productId, quantity: 1, unitPrice: price }],
          subtotal: price,
          discount: 0,
          total: price,
          userCouponId: null,
          paidAt: now.toISOString(),
        },
      }
      await conn.query(
        "INSERT INTO outbox (event_id, type, aggregate_id, payload, created_at) VALUES (?, 'order.completed', ?, ?, ?)",
        [eventId, orderId, JSON.stringify(payload), now],
      )
      const [taken] = await conn.query<mysql.ResultSetHeader>(
        'UPDATE products SET stock = stock - 1 WHERE id = ? AND stock >= 1',
        [productId],
      )
      if (taken.affectedRows !== 1) throw new Error('INSUFFICIENT_STOCK')
      await conn.query('COMMIT')
      return '201'
    } catch (error) {
      await conn.query('ROLLBACK').catch(() => undefined)
      throw error
    } finally {
      conn.release()
    }
  }

  /** `concurrency` loops placing orders back to back for `seconds`. */
  const run = async (options: {
    concurrency: number
    seconds: number
    next: () => Placement
  }): Promise<Sample> => {
    const statuses: Record<string, number> = {}
    const latenciesMs: number[] = []
    let errors = 0
    const started = performance.now()
    const deadline = started + options.seconds * 1000
    const loop = async () => {
      while (performance.now() < deadline) {
        const sent = performance.now()
        try {
          const status = await place(options.next())
          statuses[status] = (statuses[status] ?? 0) + 1
          latenciesMs.push(performance.now() - sent)
        } catch (error) {
          errors++
          const key = `error ${error instanceof Error ? error.message.slice(0, 60) : String(error)}`
          statuses[key] = (statuses[key] ?? 0) + 1
        }
      }
    }
    await Promise.all(Array.from({ length: options.concurrency }, loop))
    const seconds = (performance.now() - started) / 1000
    return { statuses, latenciesMs, seconds, errors }
  }

  return { run, close: () => pool.end() }
}
