import { and, eq, lt, sql } from 'drizzle-orm'
import type { Tx } from '../db/client'
import { coupons, userCoupons } from '../db/schema'
import { inTransaction, mysqlErrno } from '../db/transaction'
import { AppError, isAppError } from '../errors'
import { noKey, type RecordEffect } from '../idempotency/idempotency'
import { type CouponDefinition, type CouponDeps, createCouponCatalog, DAY_MS } from './coupons'
import {
  type Claim,
  type ClaimOutcome,
  claimSlot,
  confirmClaim,
  issuingUnavailable,
  reconcileStaleClaims,
  releaseClaim,
} from './issue-state'

const DUPLICATE_ENTRY = 1062

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

export type IssueRequest = {
  couponId: number
  /** The caller: a coupon is always issued to the user in the token. */
  userId: number
}

const REFUSALS: Record<Exclude<ClaimOutcome, 'CLAIMED'>, (couponId: number) => AppError> = {
  ALREADY_ISSUED: (id) => new AppError('COUPON_ALREADY_ISSUED', `You already hold coupon ${id}`),
  SOLD_OUT: (id) => new AppError('COUPON_SOLD_OUT', `Coupon ${id} has no coupons left to issue`),
  NOT_ISSUABLE: (id) =>
    new AppError('COUPON_NOT_ISSUABLE', `Coupon ${id} is not being issued now (outside its issuance window)`),
}

/** MySQL's verdict on a winner Redis admitted (its state was stale): told apart from Redis's own refusals. */
class RefusedByMysql extends AppError {}

/**
 * The winner's rows, in one transaction: the slot is taken with a guarded UPDATE of the coupon row first
 * (`issued_quantity < total_quantity`: never over-issued, whatever Redis believed), then the user coupon,
 * whose unique (coupon_id, user_id) key refuses a second one for the same user.
 */
async function persistIssue(
  tx: Tx,
  coupon: CouponDefinition,
  userId: number,
  now: Date,
): Promise<IssuedCoupon> {
  const [taken] = await tx
    .update(coupons)
    .set({ issuedQuantity: sql`${coupons.issuedQuantity} + 1` })
    .where(and(eq(coupons.id, coupon.id), lt(coupons.issuedQuantity, coupons.totalQuantity)))
  if (taken.affectedRows === 0) {
    throw new RefusedByMysql('COUPON_SOLD_OUT', `Coupon ${coupon.id} has no coupons left to issue`)
  }
  const expiresAt = new Date(now.getTime() + coupon.validDays * DAY_MS)
  let userCouponId: number
  try {
    const [row] = await tx
      .insert(userCoupons)
      .values({ couponId: coupon.id, userId, status: 'AVAILABLE', issuedAt: now, expiresAt })
      .$returningId()
    if (!row) throw new Error('user coupon insert returned no id')
    userCouponId = row.id
  } catch (error) {
    if (mysqlErrno(error) !== DUPLICATE_ENTRY) throw error
    throw new RefusedByMysql('COUPON_ALREADY_ISSUED', `You already hold coupon ${coupon.id}`)
  }
  return {
    userCouponId,
    couponId: coupon.id,
    name: coupon.name,
    type: coupon.type,
    value: coupon.value,
    minOrderAmount: coupon.minOrderAmount,
    status: 'AVAILABLE',
    issuedAt: now.toISOString(),
    expiresAt: expiresAt.toISOString(),
  }
}

/**
 * First come, first served issuing at Redis speed (see issue-state.ts for the Redis side).
 *
 * 1. The definition comes from Redis (an unknown id is cached too), then one script decides the claim.
 *    Refusals end here without touching MySQL.
 * 2. A winner is persisted in MySQL, with the request's Idempotency-Key (`record`). The claim is made
 *    before, outside the transaction, so a deadlock retry of the transaction never meets its own claim as
 *    "already issued".
 * 3. After the commit the claim is confirmed. If MySQL refused or the transaction failed, the slot is given
 *    back (the user leaves the winners set) and the client gets MySQL's verdict or a 503.
 *
 * A retry with the Idempotency-Key of a request that issued the coupon never gets here: the route layer
 * replays it before (see shared/idempotency).
 */
export function createCouponIssuer(deps: CouponDeps) {
  const catalog = createCouponCatalog(deps)
  const count = (outcome: string) => deps.metrics.couponIssues.inc({ outcome })

  const claim = async (couponId: number, userId: number, now: Date): Promise<Claim> => {
    try {
      const first = await claimSlot(deps, couponId, userId, now)
      if (!first.stale) return first
      await reconcileStaleClaims(deps, couponId, first.gen, now)
      return await claimSlot(deps, couponId, userId, now)
    } catch (error) {
      if (isAppError(error)) throw error
      deps.logger.error('coupon issuing state unavailable', { couponId, error })
      throw issuingUnavailable('Coupon issuing is unavailable right now; retry shortly', error)
    }
  }

  /** Keeps Redis in line with what happened in MySQL; a failure here is logged, never the client's. */
  const settle = async (what: string, action: () => Promise<unknown>) => {
    try {
      await action()
    } catch (error) {
      deps.logger.error(`coupon claim ${what} failed; reconciliation will settle it`, { error })
    }
  }

  return {
    async issue(
      request: IssueRequest,
      record: RecordEffect = noKey,
      now = new Date(),
    ): Promise<IssuedCoupon> {
      const { couponId, userId } = request
      const coupon = await catalog.definition(couponId)
      if (!coupon) {
        count('not_found')
        throw new AppError('COUPON_NOT_FOUND', `Coupon ${couponId} does not exist`)
      }
      const won = await claim(couponId, userId, now)
      if (won.outcome !== 'CLAIMED') {
        count(won.outcome.toLowerCase())
        throw REFUSALS[won.outcome](couponId)
      }

      try {
        const issued = await inTransaction(deps.db, async (tx) => {
          const result = await persistIssue(tx, coupon, userId, now)
          await record.insert(tx, result)
          return result
        })
        await settle('confirm', () => confirmClaim(deps, couponId, userId, won.gen))
        count('issued')
        return issued
      } catch (error) {
        if (error instanceof RefusedByMysql && error.code === 'COUPON_ALREADY_ISSUED') {
          // Redis had lost this holder (rebuilt while their issue was in flight): now it knows again.
          await settle('confirm', () => confirmClaim(deps, couponId, userId, won.gen))
          count('mysql_already_issued')
          throw error
        }
        const soldOut = error instanceof RefusedByMysql && error.code === 'COUPON_SOLD_OUT'
        await settle('release', () => releaseClaim(deps, couponId, userId, won.gen, { soldOut }))
        count(soldOut ? 'mysql_sold_out' : 'failed')
        if (isAppError(error)) throw error
        deps.logger.error('coupon issue could not be recorded', { couponId, userId, error })
        throw issuingUnavailable('The coupon could not be issued right now; retry shortly', error)
      }
    },
  }
}

export type CouponIssuer = ReturnType<typeof createCouponIssuer>
