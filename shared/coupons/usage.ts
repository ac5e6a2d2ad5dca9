import { and, eq, gt, sql } from 'drizzle-orm'
import type { Tx } from '../db/client'
import { coupons, userCoupons } from '../db/schema'
import { AppError } from '../errors'
import type { CouponTerms } from '../orders/pricing'

const notUsable = (detail: string) => new AppError('COUPON_NOT_USABLE', detail)

/**
 * The terms of a user coupon the caller may apply to an order of `subtotal`. A coupon that does not
 * exist and one of another user's get the same answer, so ids of other users' coupons cannot be probed.
 */
export async function couponTermsFor(
  tx: Tx,
  input: { userCouponId: number; userId: number; subtotal: number; now: Date },
): Promise<CouponTerms> {
  const [row] = await tx
    .select({
      userId: userCoupons.userId,
      status: userCoupons.status,
      expiresAt: userCoupons.expiresAt,
      type: coupons.type,
      value: coupons.value,
      minOrderAmount: coupons.minOrderAmount,
    })
    .from(userCoupons)
    .innerJoin(coupons, eq(coupons.id, userCoupons.couponId))
    .where(eq(userCoupons.id, input.userCouponId))
  if (!row || row.userId !== input.userId) throw notUsable(`You hold no coupon ${input.userCouponId}`)
  if (row.status !== 'AVAILABLE') throw notUsable(`Coupon ${input.userCouponId} was already used`)
  if (row.expiresAt <= input.now) throw notUsable(`Coupon ${input.userCouponId} has expired`)
  if (input.subtotal < row.minOrderAmount) {
    throw notUsable(`Coupon ${input.userCouponId} needs an order of at least ${row.minOrderAmount} won`)
  }
  return { type: row.type, value: row.value }
}

/** Marks the coupon USED by `orderId`, guarded in SQL so that of concurrent orders exactly one gets it. */
export async function useCoupon(
  tx: Tx,
  input: { userCouponId: number; userId: number; orderId: number; now: Date },
) {
  const [result] = await tx
    .update(userCoupons)
    .set({ status: 'USED', usedAt: input.now, orderId: input.orderId })
    .where(
      and(
        eq(userCoupons.id, input.userCouponId),
        eq(userCoupons.userId, input.userId),
        eq(userCoupons.status, 'AVAILABLE'),
        gt(userCoupons.expiresAt, input.now),
      ),
    )
  if (result.affectedRows !== 1) throw notUsable(`Coupon ${input.userCouponId} is no longer available`)
}

/** A cancelled order gives its coupon back (it shows as EXPIRED on reads if its time has passed). */
export async function releaseCoupon(tx: Tx, input: { userCouponId: number; orderId: number }) {
  await tx
    .update(userCoupons)
    .set({ status: 'AVAILABLE', usedAt: null, orderId: null })
    .where(
      and(
        eq(userCoupons.id, input.userCouponId),
        eq(userCoupons.orderId, input.orderId),
        sql`${userCoupons.status} = 'USED'`,
      ),
    )
}
