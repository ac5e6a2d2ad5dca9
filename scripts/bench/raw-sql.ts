import { randomUUID } from 'node:crypto'
import mysql from 'mysql2/promise'
import type { Sample } from './load'

/**
 * The database ceilings of the order scenarios: what MariaDB does when nothing but mysql2 stands in
 * front of it. `loops` loops run back to back for `seconds`, each on a connection of its own from a pool
 * of `loops` (the same concurrency as the service's side). Text protocol, as the service uses.
 */
function createLoops(databaseUrl: string, loops: number) {
  const pool = mysql.createPool({
    uri: databaseUrl,
    connectionLimit: loops,
    maxIdle: loops,
    timezone: 'Z',
    supportBigNumbers: true,
    bigNumberStrings: false,
  })
  pool.pool.on('connection', (connection) => {
    connection.query("SET time_zone = '+00:00', innodb_lock_wait_timeout = 5", () => undefined)
  })

  const run = async (
    seconds: number,
    once: (conn: mysql.PoolConnection) => Promise<void>,
  ): Promise<Sample> => {
    const statuses: Record<string, number> = {}
    const latenciesMs: number[] = []
    let errors = 0
    const started = performance.now()
    const deadline = started + seconds * 1000
    const loop = async () => {
      const conn = await pool.getConnection()
      try {
        while (performance.now() < deadline) {
          const sent = performance.now()
          try {
            await once(conn)
            statuses.ok = (statuses.ok ?? 0) + 1
            latenciesMs.push(performance.now() - sent)
          } catch (error) {
            errors++
            const key = `error ${error instanceof Error ? error.message.slice(0, 60) : String(error)}`
            statuses[key] = (statuses[key] ?? 0) + 1
          }
        }
      } finally {
        conn.release()
      }
    }
    await Promise.all(Array.from({ length: loops }, loop))
    return { statuses, latenciesMs, seconds: (performance.now() - started) / 1000, errors }
  }
  return { run, close: () => pool.end() }
}

export type RawProduct = { id: number; name: string; price: number }
type Placement = { userId: number; product: RawProduct }

/**
 * The minimal order transaction: BEGIN; guarded stock UPDATE; guarded balance UPDATE; INSERT order;
 * INSERT line; INSERT outbox; COMMIT, the product's name and price known beforehand. Its rows are real
 * PAID orders with their line, so the stock invariant holds over its products; it writes no ledger entry
 * (the minimal transaction has none), so its buyers are left out of the balance invariant. Its outbox
 * rows are written as already published, so the relay leaves them alone: the relay's work in the
 * figures is for the service's orders only.
 */
export function createRawOrders(databaseUrl: string, loops: number) {
  const pool = createLoops(databaseUrl, loops)
  const place = async (conn: mysql.PoolConnection, { userId, product }: Placement) => {
    const now = new Date()
    await conn.query('BEGIN')
    try {
      const [taken] = await conn.query<mysql.ResultSetHeader>(
        'UPDATE products SET stock = stock - 1 WHERE id = ? AND stock >= 1',
        [product.id],
      )
      if (taken.affectedRows !== 1) throw new Error('INSUFFICIENT_STOCK')
      const [paid] = await conn.query<mysql.ResultSetHeader>(
        'UPDATE balances SET balance = balance - ?, updated_at = ? WHERE user_id = ? AND balance >= ?',
        [product.price, now, userId, product.price],
      )
      if (paid.affectedRows !== 1) throw new Error('INSUFFICIENT_BALANCE')
      const [order] = await conn.query<mysql.ResultSetHeader>(
        "INSERT INTO orders (user_id, status, subtotal, discount, total, user_coupon_id, created_at, paid_at) VALUES (?, 'PAID', ?, 0, ?, NULL, ?, ?)",
        [userId, product.price, product.price, now, now],
      )
      const orderId = order.insertId
      await conn.query(
        'INSERT INTO order_lines (order_id, product_id, name, unit_price, quantity, line_total) VALUES (?, ?, ?, ?, 1, ?)',
        [orderId, product.id, product.name, product.price, product.price],
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
          items: [{ productId: product.id, quantity: 1, unitPrice: product.price }],
          subtotal: product.price,
          discount: 0,
          total: product.price,
          userCouponId: null,
          paidAt: now.toISOString(),
        },
      }
      await conn.query(
        "INSERT INTO outbox (event_id, type, aggregate_id, payload, created_at, published_at) VALUES (?, 'order.completed', ?, ?, ?, ?)",
        [eventId, orderId, JSON.stringify(payload), now, now],
      )
      await conn.query('COMMIT')
    } catch (error) {
      await conn.query('ROLLBACK').catch(() => undefined)
      throw error
    }
  }
  return {
    run: (seconds: number, next: () => Placement) => pool.run(seconds, (conn) => place(conn, next())),
    close: pool.close,
  }
}

/**
 * The hot-row ceiling: autocommit `UPDATE products SET stock = stock - 1 WHERE id = ? AND stock >= 1` on
 * one row. It changes stock without an order, so its product is left out of the invariant check.
 */
export function createRawHotRow(databaseUrl: string, loops: number) {
  const pool = createLoops(databaseUrl, loops)
  return {
    run: (seconds: number, productId: number) =>
      pool.run(seconds, async (conn) => {
        const [taken] = await conn.query<mysql.ResultSetHeader>(
          'UPDATE products SET stock = stock - 1 WHERE id = ? AND stock >= 1',
          [productId],
        )
        if (taken.affectedRows !== 1) throw new Error('INSUFFICIENT_STOCK')
      }),
    close: pool.close,
  }
}
