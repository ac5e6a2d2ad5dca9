import type { Pool } from 'mysql2'
import { sqlText } from '../db/sql-text'
import { inSqlTransaction, mysqlErrno, type TransactionOptions } from '../db/transaction'
import { AppError } from '../errors'
import { KeyTaken, type RecordEffect } from '../idempotency/idempotency'
import { type CouponDefinition, DAY_MS } from './coupons'

export type IssuedCoupon = {
  userCouponId: number
  couponId: number
  name: string
  type: 'FIXED' | 'PERCENT'
  value: number
  minOrderAmount: number
  status: 'AVAILABLE'
  issuedAt: string
  expiresAt: string
}

/** A winner Redis admitted, on its way to MySQL with its Idempotency-Key (`record`). */
export type PersistRequest = { coupon: CouponDefinition; userId: number; record: RecordEffect; now: Date }
export type PersistOutcome = { issued: IssuedCoupon } | { error: Error }

/** MySQL's verdict on a winner Redis admitted (its state was stale): told apart from Redis's own refusals. */
export class RefusedByMysql extends AppError {}

const soldOut = (couponId: number) =>
  new RefusedByMysql('COUPON_SOLD_OUT', `Coupon ${couponId} has no coupons left to issue`)
const alreadyIssued = (couponId: number) =>
  new RefusedByMysql('COUPON_ALREADY_ISSUED', `You already hold coupon ${couponId}`)

const DUPLICATE_ENTRY = 1062
/** A CHECK constraint refused a row (MariaDB's ER_CONSTRAINT_FAILED): coupons_not_over_issued. */
const CONSTRAINT_FAILED = 4025
/** The unique key behind "one per user" (shared/db/schema/user-coupons.ts). */
const ONE_PER_USER_KEY = 'user_coupons_coupon_user'

/**
 * The slot UPDATE matched fewer rows than the locked rows said it would: nothing is committed. Alone, a
 * winner meets it only when its coupon is full (issued_quantity + 1 > total_quantity).
 */
class GuardMismatch extends Error {
  override name = 'GuardMismatch'
}

type CouponRow = { id: number; total_quantity: number; issued_quantity: number }
type HolderRow = { coupon_id: number; user_id: number }
type IssuedRow = HolderRow & { id: number }

const unique = (values: number[]) => [...new Set(values)]
const pair = (couponId: number, userId: number) => `${couponId}:${userId}`

/**
 * Locks the batch's coupon rows (ascending id, the one lock order) and reads which of its users already
 * hold them, in one round trip. Every issue takes its coupon's row before it writes a user coupon, so
 * while the lock is held no other issue can add a holder or take a slot: the reads are the truth until
 * commit.
 */
function lockingReads(requests: PersistRequest[]) {
  const couponIds = unique(requests.map((r) => r.coupon.id)).sort((a, b) => a - b)
  const userIds = unique(requests.map((r) => r.userId))
  return [
    sqlText(
      'SELECT id, total_quantity, issued_quantity FROM coupons WHERE id IN (?) ORDER BY id FOR UPDATE',
      [couponIds],
    ),
    sqlText('SELECT coupon_id, user_id FROM user_coupons WHERE coupon_id IN (?) AND user_id IN (?)', [
      couponIds,
      userIds,
    ]),
  ].join(';')
}

/**
 * Each request in arrival order against the locked rows, as the guards would decide it one at a time: a
 * holder is refused (one per user), then a full coupon; everyone else is a winner and takes a slot.
 */
function decide(requests: PersistRequest[], rows: CouponRow[], holders: HolderRow[]): Array<number | Error> {
  const room = new Map(rows.map((c) => [c.id, c.total_quantity - c.issued_quantity]))
  const held = new Set(holders.map((h) => pair(h.coupon_id, h.user_id)))
  return requests.map(({ coupon, userId }, index) => {
    const key = pair(coupon.id, userId)
    if (held.has(key)) return alreadyIssued(coupon.id)
    const left = room.get(coupon.id) ?? 0
    if (left <= 0) return soldOut(coupon.id)
    room.set(coupon.id, left - 1)
    held.add(key)
    return index
  })
}

/**
 * The winners' writes in one round trip: one guarded UPDATE takes every coupon's slots (`issued_quantity
 * + n <= total_quantity`, and the CHECK constraint behind it), one multi-row INSERT writes a user coupon
 * per winner, and a SELECT reads their ids back (consecutive AUTO_INCREMENT ids are not promised for
 * multi-row inserts under every innodb_autoinc_lock_mode).
 */
function writes(winners: PersistRequest[]) {
  const taken = new Map<number, number>()
  for (const w of winners) taken.set(w.coupon.id, (taken.get(w.coupon.id) ?? 0) + 1)
  const counts = [...taken].sort(([a], [b]) => a - b)
  const ids = counts.map(([id]) => id)
  const increment = `CASE id ${counts.map(([id, n]) => sqlText('WHEN ? THEN ?', [id, n])).join(' ')} END`
  return {
    sql: [
      `UPDATE coupons SET issued_quantity = issued_quantity + ${increment} WHERE id IN (${sqlText('?', [ids])}) AND issued_quantity + ${increment} <= total_quantity`,
      sqlText('INSERT INTO user_coupons (coupon_id, user_id, status, issued_at, expires_at) VALUES ?', [
        winners.map((w) => [
          w.coupon.id,
          w.userId,
          'AVAILABLE',
          w.now,
          new Date(w.now.getTime() + w.coupon.validDays * DAY_MS),
        ]),
      ]),
      sqlText('SELECT id, coupon_id, user_id FROM user_coupons WHERE coupon_id IN (?) AND user_id IN (?)', [
        ids,
        unique(winners.map((w) => w.userId)),
      ]),
    ].join(';'),
    coupons: counts.length,
  }
}

const issuedCoupon = (request: PersistRequest, userCouponId: number): IssuedCoupon => {
  const { coupon, now } = request
  return {
    userCouponId,
    couponId: coupon.id,
    name: coupon.name,
    type: coupon.type,
    value: coupon.value,
    minOrderAmount: coupon.minOrderAmount,
    status: 'AVAILABLE',
    issuedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + coupon.validDays * DAY_MS).toISOString(),
  }
}

/**
 * Writes a batch of winners in one transaction of four round trips (begin; lock and read; write; the
 * idempotency keys and commit), however many winners it holds: the group commit of docs/coupons.md. Each
 * winner keeps its own user coupon row and its own key, and is decided on its own, so one winner's refusal
 * never fails another's; a write that fails anyway (a guard, the unique key, a key another request
 * committed first) rolls the batch back and each winner is written again alone, meeting its own verdict.
 */
export async function persistBatch(
  pool: Pool,
  requests: PersistRequest[],
  options: TransactionOptions = {},
): Promise<PersistOutcome[]> {
  try {
    return await inSqlTransaction(
      pool,
      async (session) => {
        const [rows, holders] = (await session.query(lockingReads(requests))) as [CouponRow[], HolderRow[]]
        const decided = decide(requests, rows, holders)
        const outcomes: PersistOutcome[] = decided.map((d) =>
          d instanceof Error ? { error: d } : { error: new Error('pending') },
        )
        const winners = decided.flatMap((d) => (d instanceof Error ? [] : [requests[d] as PersistRequest]))
        if (winners.length === 0) return outcomes

        const { sql, coupons } = writes(winners)
        const [updated, , issuedRows] = (await session.query(sql)) as [
          { affectedRows: number },
          unknown,
          IssuedRow[],
        ]
        if (updated.affectedRows !== coupons) {
          throw new GuardMismatch('the slot UPDATE disagreed with the locked coupon rows')
        }
        const ids = new Map(issuedRows.map((r) => [pair(r.coupon_id, r.user_id), r.id]))
        const keys: string[] = []
        for (const d of decided) {
          if (d instanceof Error) continue
          const request = requests[d] as PersistRequest
          const id = ids.get(pair(request.coupon.id, request.userId))
          if (id === undefined) throw new Error('an inserted user coupon was not read back')
          const issued = issuedCoupon(request, id)
          const key = request.record.sql(issued)
          if (key !== '') keys.push(key)
          outcomes[d] = { issued }
        }
        await session.commit(keys.join(';'))
        return outcomes
      },
      { ...options, readCommitted: true },
    )
  } catch (error) {
    const errno = mysqlErrno(error)
    const isolate = error instanceof GuardMismatch || errno === DUPLICATE_ENTRY || errno === CONSTRAINT_FAILED
    if (!isolate) throw error
    if (requests.length > 1) {
      return (await Promise.all(requests.map((request) => persistBatch(pool, [request], options)))).flat()
    }
    const [request] = requests as [PersistRequest]
    if (errno === DUPLICATE_ENTRY) {
      // The user coupon's own unique key (a holder written by something else than issuing), or a live
      // Idempotency-Key a concurrent request committed first.
      const onePerUser = String((error as { message?: unknown }).message).includes(ONE_PER_USER_KEY)
      return [{ error: onePerUser ? alreadyIssued(request.coupon.id) : new KeyTaken() }]
    }
    return [{ error: soldOut(request.coupon.id) }]
  }
}
