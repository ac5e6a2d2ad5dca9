import { type SQL, sql } from 'drizzle-orm'
import type { Db } from '../db/client'

export type InvariantScope = {
  productIds?: number[]
  userIds?: number[]
  couponIds?: number[]
}

type Row = Record<string, unknown>

/**
 * docs/invariants.md, checked in MySQL. Each check is a single statement, so it sees one consistent snapshot even
 * while other transactions commit. A scope limits the check to a test's own rows (the test database is
 * shared, and some tests change rows behind the service's back on purpose). Returns the violations,
 * one readable line each; an empty list means every invariant holds.
 */
export async function checkInvariants(db: Db, scope: InvariantScope = {}): Promise<string[]> {
  // With a scope, only what it names is checked: a test that names its products is not failed by
  // another test's users. Without one, everything is.
  const scoped = Object.keys(scope).length > 0
  const inList = (column: SQL, ids: number[] | undefined) =>
    ids === undefined
      ? sql.raw(scoped ? 'FALSE' : 'TRUE')
      : ids.length === 0
        ? sql`FALSE`
        : sql`${column} IN (${sql.join(ids, sql`, `)})`
  const violations: string[] = []
  const report = (rows: Row[], describe: (row: Row) => string) => {
    for (const row of rows) violations.push(describe(row))
  }
  const rows = async (query: SQL) => ((await db.execute(query)) as unknown as [Row[]])[0]

  // Stock = initial + adjustments - units in PAID orders, and never below 0.
  report(
    await rows(sql`
      SELECT p.id, p.stock, p.initial_stock + p.stock_adjustments - COALESCE(s.sold, 0) AS expected
      FROM products p
      LEFT JOIN (
        SELECT ol.product_id, SUM(ol.quantity) AS sold
        FROM order_lines ol JOIN orders o ON o.id = ol.order_id
        WHERE o.status = 'PAID' GROUP BY ol.product_id
      ) s ON s.product_id = p.id
      WHERE ${inList(sql`p.id`, scope.productIds)}
        AND (p.stock < 0 OR p.stock <> p.initial_stock + p.stock_adjustments - COALESCE(s.sold, 0))`),
    (r) => `product ${r.id}: stock ${r.stock}, expected ${r.expected}`,
  )

  // Balance = sum of ledger entries >= 0; payments match paid orders; refunds match cancelled orders.
  report(
    await rows(sql`
      SELECT b.user_id, b.balance, COALESCE(l.total, 0) AS ledger
      FROM balances b
      LEFT JOIN (SELECT user_id, SUM(amount) AS total FROM balance_ledger GROUP BY user_id) l ON l.user_id = b.user_id
      WHERE ${inList(sql`b.user_id`, scope.userIds)}
        AND (b.balance < 0 OR b.balance <> COALESCE(l.total, 0))`),
    (r) => `user ${r.user_id}: balance ${r.balance}, ledger sums to ${r.ledger}`,
  )
  report(
    await rows(sql`
      SELECT o.id, o.status, o.total,
        (SELECT COALESCE(SUM(-amount), 0) FROM balance_ledger WHERE order_id = o.id AND user_id = o.user_id AND type = 'PAYMENT') AS paid,
        (SELECT COALESCE(SUM(amount), 0) FROM balance_ledger WHERE order_id = o.id AND user_id = o.user_id AND type = 'REFUND') AS refunded,
        (SELECT COUNT(*) FROM balance_ledger WHERE order_id = o.id AND user_id = o.user_id AND type = 'PAYMENT') AS payments,
        (SELECT COUNT(*) FROM balance_ledger WHERE order_id = o.id AND user_id = o.user_id AND type = 'REFUND') AS refunds
      FROM orders o
      WHERE ${inList(sql`o.user_id`, scope.userIds)}
      HAVING payments <> 1 OR paid <> total
        OR refunds <> IF(status = 'CANCELLED', 1, 0) OR refunded <> IF(status = 'CANCELLED', total, 0)`),
    (r) =>
      `order ${r.id} (${r.status}, total ${r.total}): paid ${r.paid} in ${r.payments}, refunded ${r.refunded} in ${r.refunds}`,
  )

  // Coupons: never over-issued, issued count matches holders, each user coupon used by at most one PAID order.
  report(
    await rows(sql`
      SELECT c.id, c.total_quantity, c.issued_quantity, (SELECT COUNT(*) FROM user_coupons uc WHERE uc.coupon_id = c.id) AS holders
      FROM coupons c
      WHERE ${inList(sql`c.id`, scope.couponIds)}
      HAVING issued_quantity > total_quantity OR holders <> issued_quantity`),
    (r) => `coupon ${r.id}: total ${r.total_quantity}, issued ${r.issued_quantity}, held by ${r.holders}`,
  )
  report(
    await rows(sql`
      SELECT uc.id, uc.status, COUNT(o.id) AS paid_orders, MAX(o.id) AS order_id, uc.order_id AS recorded
      FROM user_coupons uc
      LEFT JOIN orders o ON o.user_coupon_id = uc.id AND o.status = 'PAID'
      WHERE ${inList(sql`uc.user_id`, scope.userIds)}
      GROUP BY uc.id, uc.status, uc.order_id
      HAVING paid_orders > 1 OR (status = 'USED') <> (paid_orders = 1) OR (paid_orders = 1 AND recorded <> order_id)`),
    (r) => `user coupon ${r.id}: status ${r.status}, in ${r.paid_orders} paid orders`,
  )

  // Events: exactly one order.completed per order, one order.cancelled per cancelled order, none otherwise.
  report(
    await rows(sql`
      SELECT o.id, o.status,
        SUM(e.type = 'order.completed') AS completed, SUM(e.type = 'order.cancelled') AS cancelled
      FROM orders o LEFT JOIN outbox e ON e.aggregate_id = o.id
      WHERE ${inList(sql`o.user_id`, scope.userIds)}
      GROUP BY o.id, o.status
      HAVING COALESCE(completed, 0) <> 1 OR COALESCE(cancelled, 0) <> IF(status = 'CANCELLED', 1, 0)`),
    (r) =>
      `order ${r.id} (${r.status}): ${r.completed ?? 0} order.completed, ${r.cancelled ?? 0} order.cancelled events`,
  )
  report(
    await rows(sql`
      SELECT e.event_id, e.aggregate_id FROM outbox e LEFT JOIN orders o ON o.id = e.aggregate_id
      WHERE o.id IS NULL AND ${inList(sql`JSON_VALUE(e.payload, '$.data.userId')`, scope.userIds)}`),
    (r) => `event ${r.event_id} names order ${r.aggregate_id}, which does not exist`,
  )
  return violations
}
