import { randomUUID } from 'node:crypto'
import type { Pool } from 'mysql2'
import { sqlText } from '../db/sql-text'
import { inSqlTransaction, mysqlErrno, type TransactionOptions } from '../db/transaction'
import { AppError } from '../errors'
import type { EventEnvelope } from '../events/outbox'
import { KeyTaken, type RecordEffect } from '../idempotency/idempotency'
import { eventData, type Order, type OrderLine, type PlaceOrderInput } from './order'
import { discountFor, priceLines } from './pricing'

export type PlacementRequest = { userId: number; input: PlaceOrderInput; record: RecordEffect }

/** Refused for lack of stock; `left` is what MySQL had for the line once the orders before it took theirs. */
export class StockRefused extends AppError {
  constructor(
    readonly productId: number,
    readonly left: number,
  ) {
    super('INSUFFICIENT_STOCK', `Not enough stock of product ${productId} for this order`)
  }
}

export type PlacementOutcome = { order: Order; eventId: string } | { error: Error }

type ProductRow = { id: number; name: string; price: number; stock: number }
type UserCouponRow = {
  id: number
  user_id: number
  status: 'AVAILABLE' | 'USED'
  expires_at: Date
  coupon_id: number
}
type CouponRow = { id: number; type: 'FIXED' | 'PERCENT'; value: number; min_order_amount: number }
type BalanceRow = { user_id: number; balance: number }
type Header = { affectedRows: number }

type Winner = {
  index: number
  userId: number
  lines: OrderLine[]
  subtotal: number
  discount: number
  total: number
  userCouponId: number | null
  /** The user has no balance row yet (a free order): it is opened in the same transaction. */
  opensAccount: boolean
  /** The balance once this order (and the user's orders before it in the batch) is paid: its ledger entry's. */
  balanceAfter: number
}

const unique = (values: number[]) => [...new Set(values)]
const notUsable = (detail: string) => new AppError('COUPON_NOT_USABLE', detail)

const DUPLICATE_ENTRY = 1062
/** A CHECK constraint refused a row (MariaDB's ER_CONSTRAINT_FAILED): a balance or stock below zero. */
const CONSTRAINT_FAILED = 4025

/** A guarded UPDATE matched no row although the rows were locked and checked: nothing is committed. */
class GuardMismatch extends Error {
  override name = 'GuardMismatch'
}

/**
 * Reads and locks every row the batch's orders can change, in the one lock order of every transaction
 * here (user coupons, then balances, then products, each by ascending id: docs/orders.md), in one round
 * trip. Coupon terms are read without a lock: a coupon's definition never changes.
 */
function lockingReads(requests: PlacementRequest[]) {
  const couponIds = unique(
    requests.flatMap((r) => (r.input.userCouponId === undefined ? [] : [r.input.userCouponId])),
  )
  const userIds = unique(requests.map((r) => r.userId))
  const productIds = unique(requests.flatMap((r) => r.input.items.map((item) => item.productId)))
  // A batch without coupons (most) reads no coupon rows: two statements fewer for MySQL to run.
  const coupons =
    couponIds.length === 0
      ? []
      : [
          sqlText(
            'SELECT id, user_id, status, expires_at, coupon_id FROM user_coupons WHERE id IN (?) ORDER BY id FOR UPDATE',
            [couponIds],
          ),
          sqlText(
            'SELECT c.id, c.type, c.value, c.min_order_amount FROM coupons c JOIN user_coupons uc ON uc.coupon_id = c.id WHERE uc.id IN (?)',
            [couponIds],
          ),
        ]
  return {
    withCoupons: coupons.length > 0,
    sql: [
      ...coupons,
      sqlText('SELECT user_id, balance FROM balances WHERE user_id IN (?) ORDER BY user_id FOR UPDATE', [
        userIds,
      ]),
      sqlText('SELECT id, name, price, stock FROM products WHERE id IN (?) ORDER BY id FOR UPDATE', [
        productIds,
      ]),
    ].join(';'),
  }
}

/**
 * Decides each order in arrival order against what the locked rows hold, as MySQL's guards would: the
 * refusals in the order the single-order path reported them (unknown product, coupon, balance, stock),
 * and each winner's share taken from the running balance, coupon and stock before the next is decided.
 * The guarded UPDATEs that follow stay the ground truth (GuardMismatch if one ever disagrees).
 */
function decide(
  requests: PlacementRequest[],
  rows: {
    userCoupons: UserCouponRow[]
    coupons: CouponRow[]
    balances: BalanceRow[]
    products: ProductRow[]
  },
  now: Date,
): Array<Winner | Error> {
  const products = new Map(rows.products.map((p) => [p.id, p]))
  const stock = new Map(rows.products.map((p) => [p.id, p.stock]))
  const balance = new Map(rows.balances.map((b) => [b.user_id, b.balance]))
  const userCoupons = new Map(rows.userCoupons.map((c) => [c.id, c]))
  const terms = new Map(rows.coupons.map((c) => [c.id, c]))
  const used = new Set<number>()

  return requests.map(({ userId, input }, index): Winner | Error => {
    const missing = input.items.find((item) => !products.has(item.productId))
    if (missing) return new AppError('PRODUCT_NOT_FOUND', `Product ${missing.productId} does not exist`)
    const priced = priceLines(
      input.items.map((item) => {
        const product = products.get(item.productId) as ProductRow
        return {
          productId: item.productId,
          name: product.name,
          unitPrice: product.price,
          quantity: item.quantity,
        }
      }),
    )
    let discount = 0
    const couponId = input.userCouponId ?? null
    if (couponId !== null) {
      const held = userCoupons.get(couponId)
      if (!held || held.user_id !== userId) return notUsable(`You hold no coupon ${couponId}`)
      if (held.status !== 'AVAILABLE' || used.has(couponId))
        return notUsable(`Coupon ${couponId} was already used`)
      if (held.expires_at <= now) return notUsable(`Coupon ${couponId} has expired`)
      const coupon = terms.get(held.coupon_id)
      if (!coupon) return notUsable(`Coupon ${couponId} was already used`)
      if (priced.subtotal < coupon.min_order_amount) {
        return notUsable(`Coupon ${couponId} needs an order of at least ${coupon.min_order_amount} won`)
      }
      discount = discountFor(priced.subtotal, { type: coupon.type, value: coupon.value })
    }
    const total = priced.subtotal - discount
    const has = balance.get(userId)
    if ((has ?? 0) < total) {
      return new AppError('INSUFFICIENT_BALANCE', `The order total of ${total} won exceeds the balance`)
    }
    const lines = [...priced.lines].sort((a, b) => a.productId - b.productId)
    for (const line of lines) {
      const left = stock.get(line.productId) as number
      if (left < line.quantity) return new StockRefused(line.productId, left)
    }
    for (const line of lines) stock.set(line.productId, (stock.get(line.productId) as number) - line.quantity)
    balance.set(userId, (has ?? 0) - total)
    if (couponId !== null) used.add(couponId)
    return {
      balanceAfter: (has ?? 0) - total,
      index,
      userId,
      lines,
      subtotal: priced.subtotal,
      discount,
      total,
      userCouponId: couponId,
      opensAccount: has === undefined,
    }
  })
}

/** `CASE <column> WHEN k THEN v … END` with escaped keys and values (or raw SQL values, for ids). */
const caseOf = (column: string, pairs: Array<[number, unknown]>, raw = false) =>
  `CASE ${column} ${pairs.map(([k, v]) => (raw ? `WHEN ${sqlText('?', [k])} THEN ${String(v)}` : sqlText('WHEN ? THEN ?', [k, v]))).join(' ')} END`

/**
 * The winners' writes in one round trip, set by set: each order's own row (its id kept in a session
 * variable), then every order's lines, coupon uses, balance debits (one UPDATE for all the batch's users)
 * with one ledger entry per order, and last, one stock UPDATE for all the batch's products, so that a hot
 * product's row is changed as late as possible. Every row they touch was locked and decided in round trip
 * 1; `guards` say how many rows each UPDATE must match, and the CHECK constraints (`balance >= 0`,
 * `stock >= 0`) refuse, in SQL, any debit that would go below zero: money and stock are still decided
 * there, whatever the decisions above said.
 */
function writes(winners: Winner[], now: Date) {
  const statements: string[] = []
  const guards: Array<{ at: number; rows: number }> = []
  const add = (sql: string, rows?: number) => {
    if (rows !== undefined) guards.push({ at: statements.length, rows })
    statements.push(sql)
  }
  const id = (i: number) => `@placed_${i}`
  for (const [i, w] of winners.entries()) {
    add(
      sqlText(
        "INSERT INTO orders (user_id, status, subtotal, discount, total, user_coupon_id, created_at, paid_at) VALUES (?, 'PAID', ?, ?, ?, ?, ?, ?)",
        [w.userId, w.subtotal, w.discount, w.total, w.userCouponId, now, now],
      ),
    )
    add(`SET ${id(i)} = LAST_INSERT_ID()`)
  }
  add(
    `INSERT INTO order_lines (order_id, product_id, name, unit_price, quantity, line_total) VALUES ${winners
      .flatMap((w, i) =>
        w.lines.map((l) =>
          sqlText(`(${id(i)}, ?, ?, ?, ?, ?)`, [l.productId, l.name, l.unitPrice, l.quantity, l.lineTotal]),
        ),
      )
      .join(', ')}`,
  )
  const coupons = winners.flatMap((w, i) => (w.userCouponId === null ? [] : [{ w, i, id: w.userCouponId }]))
  if (coupons.length > 0) {
    add(
      `UPDATE user_coupons SET status = 'USED', used_at = ${sqlText('?', [now])}, order_id = ${caseOf(
        'id',
        coupons.map((c) => [c.id, id(c.i)]),
        true,
      )} WHERE id IN (${sqlText('?', [coupons.map((c) => c.id)])}) AND user_id = ${caseOf(
        'id',
        coupons.map((c) => [c.id, c.w.userId]),
      )} AND status = 'AVAILABLE' AND expires_at > ${sqlText('?', [now])}`,
      coupons.length,
    )
  }
  const opening = [...new Set(winners.filter((w) => w.opensAccount).map((w) => w.userId))]
  if (opening.length > 0) {
    add(
      sqlText('INSERT IGNORE INTO balances (user_id, balance, created_at, updated_at) VALUES ?', [
        opening.map((userId) => [userId, 0, now, now]),
      ]),
    )
  }
  const debits = new Map<number, number>()
  for (const w of winners) debits.set(w.userId, (debits.get(w.userId) ?? 0) + w.total)
  const users = [...debits].sort(([a], [b]) => a - b)
  add(
    `UPDATE balances SET balance = balance - ${caseOf('user_id', users)}, updated_at = ${sqlText('?', [now])} WHERE user_id IN (${sqlText('?', [users.map(([u]) => u)])})`,
    users.length,
  )
  add(
    `INSERT INTO balance_ledger (user_id, type, amount, balance_after, order_id, created_at) VALUES ${winners
      .map((w, i) => sqlText(`(?, 'PAYMENT', ?, ?, ${id(i)}, ?)`, [w.userId, -w.total, w.balanceAfter, now]))
      .join(', ')}`,
  )
  const taken = new Map<number, number>()
  for (const w of winners)
    for (const l of w.lines) taken.set(l.productId, (taken.get(l.productId) ?? 0) + l.quantity)
  const stock = [...taken].sort(([a], [b]) => a - b)
  add(
    `UPDATE products SET stock = stock - ${caseOf('id', stock)} WHERE id IN (${sqlText('?', [stock.map(([p]) => p)])})`,
    stock.length,
  )
  add(`SELECT ${winners.map((_, i) => id(i)).join(', ')}`)
  return { sql: statements.join(';'), guards }
}

export type PlaceBatchOptions = TransactionOptions & {
  /** Lets a test see the moment the rows are locked (group-commit tests); never set in the service. */
  onLocked?: () => Promise<void>
}

/**
 * Places a batch of orders in one transaction of three round trips: lock and read, write, commit (with
 * the outbox events and idempotency keys). Each order keeps its own rows, ledger entry, event and key;
 * each is decided on its own, so one order's refusal never fails another's. See docs/orders.md.
 */
export async function placeBatch(
  pool: Pool,
  requests: PlacementRequest[],
  options: PlaceBatchOptions = {},
): Promise<PlacementOutcome[]> {
  try {
    return await inSqlTransaction(
      pool,
      async (session) => {
        const now = new Date()
        const reads = lockingReads(requests)
        const locked = (await session.query(reads.sql)) as unknown[]
        const [userCoupons, coupons, balances, products] = (
          reads.withCoupons ? locked : [[], [], ...locked]
        ) as [UserCouponRow[], CouponRow[], BalanceRow[], ProductRow[]]
        await options.onLocked?.()
        const decided = decide(requests, { userCoupons, coupons, balances, products }, now)
        const winners = decided.filter((d): d is Winner => !(d instanceof Error))
        const outcomes: PlacementOutcome[] = decided.map((d) =>
          d instanceof Error ? { error: d } : { error: new Error('pending') },
        )
        if (winners.length === 0) return outcomes

        const { sql, guards } = writes(winners, now)
        const results = (await session.query(sql)) as unknown[]
        if (guards.some((g) => (results[g.at] as Header).affectedRows !== g.rows)) {
          throw new GuardMismatch('a guarded UPDATE disagreed with the locked rows')
        }
        const [ids] = results.at(-1) as [Record<string, number>]
        const events: unknown[][] = []
        const keys: string[] = []
        for (const [i, w] of winners.entries()) {
          const order: Order = {
            id: Number(Object.values(ids)[i]),
            userId: w.userId,
            status: 'PAID',
            items: w.lines,
            subtotal: w.subtotal,
            discount: w.discount,
            total: w.total,
            userCouponId: w.userCouponId,
            createdAt: now.toISOString(),
            paidAt: now.toISOString(),
          }
          const envelope: EventEnvelope = {
            eventId: randomUUID(),
            type: 'order.completed',
            schemaVersion: 1,
            occurredAt: now.toISOString(),
            data: eventData(order),
          }
          events.push([envelope.eventId, envelope.type, order.id, JSON.stringify(envelope), now])
          const key = requests[w.index]?.record.sql(order) ?? ''
          if (key !== '') keys.push(key)
          outcomes[w.index] = { order, eventId: envelope.eventId }
        }
        await session.commit(
          [
            sqlText('INSERT INTO outbox (event_id, type, aggregate_id, payload, created_at) VALUES ?', [
              events,
            ]),
            ...keys,
          ].join(';'),
        )
        return outcomes
      },
      { ...options, readCommitted: true },
    )
  } catch (error) {
    // A guard or a CHECK constraint that disagreed, or a key another request committed first: nothing
    // was committed. Alone, each order meets its own verdict (KeyTaken, or the guard's) without failing
    // the others.
    const errno = mysqlErrno(error)
    const isolate = error instanceof GuardMismatch || errno === DUPLICATE_ENTRY || errno === CONSTRAINT_FAILED
    if (!isolate || requests.length === 1) {
      if (errno === DUPLICATE_ENTRY) return [{ error: new KeyTaken() }]
      throw error
    }
    return (await Promise.all(requests.map((request) => placeBatch(pool, [request], options)))).flat()
  }
}
