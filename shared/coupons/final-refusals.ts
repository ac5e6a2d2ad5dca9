/**
 * Refusals that can never turn into an issue, remembered per process so that a user asking again (a
 * burst sends the same users over and over) is answered without a Redis round trip.
 *
 * Only facts that MySQL makes permanent are kept, never a mere "Redis is full right now": a claim in
 * flight may still fail and give its slot back, so SOLD_OUT while claims are pending, or ALREADY_ISSUED
 * for a user whose own claim is pending, is not remembered. What is remembered:
 *
 * - ALREADY_ISSUED for a user who holds the coupon in MySQL: issued here (committed), refused by MySQL's
 *   unique key, or a holder the claim script reports as confirmed (in the winners set, not pending).
 *   User coupons are never deleted, so a holder stays one.
 * - SOLD_OUT for a user who does not hold the coupon, once it is full in MySQL: MySQL said so, or the
 *   claim script found it full with no claim pending (every member of the winners set is then a holder
 *   in MySQL). issued_quantity never goes down and totals never change, so no slot can come back.
 *
 * When the claim script reports a coupon `complete` (full with no claim pending), its winners set is
 * exactly its holders in MySQL, for good: that list is kept too (coupons of at most COMPLETE_MAX), and
 * then every user is answered from memory, the first time too: a holder ALREADY_ISSUED, anyone else
 * SOLD_OUT.
 *
 * Issuance windows still apply: a remembered SOLD_OUT is answered NOT_ISSUABLE once the window has
 * closed, as the claim script would (it checks the window before the room). Entries live for
 * DEFINITION_TTL_MS at most, like the coupon definitions beside them, so that even a change made behind
 * the service's back (a restored backup) is forgotten as soon as the definitions are; the whole memory is
 * dropped when it reaches MAX_ENTRIES (holder lists counted by their length).
 */
export type FinalRefusal = 'ALREADY_ISSUED' | 'SOLD_OUT'

const MAX_ENTRIES = 200_000
/** Holder lists are kept for coupons of at most this many: one SMEMBERS, and this many ids in memory. */
export const COMPLETE_MAX = 100_000

type Remembered = { refusal: FinalRefusal; untilMs: number }
type Complete = { holders: Set<number>; untilMs: number }

export function createFinalRefusals(ttlMs: number) {
  const byCoupon = new Map<number, Map<number, Remembered>>()
  const complete = new Map<number, Complete>()
  let size = 0

  const fromComplete = (couponId: number, userId: number, nowMs: number): FinalRefusal | undefined => {
    const entry = complete.get(couponId)
    if (!entry) return undefined
    if (entry.untilMs <= nowMs) {
      complete.delete(couponId)
      size -= entry.holders.size
      return undefined
    }
    return entry.holders.has(userId) ? 'ALREADY_ISSUED' : 'SOLD_OUT'
  }

  return {
    /** The remembered refusal of this user for this coupon, if any. */
    get(couponId: number, userId: number, nowMs: number): FinalRefusal | undefined {
      const entry = byCoupon.get(couponId)?.get(userId)
      if (!entry) return fromComplete(couponId, userId, nowMs)
      if (entry.untilMs > nowMs) return entry.refusal
      byCoupon.get(couponId)?.delete(userId)
      size--
      return fromComplete(couponId, userId, nowMs)
    },

    /** Whether the holder list of this coupon is kept (so it need not be fetched again). */
    isComplete(couponId: number): boolean {
      return complete.has(couponId)
    },

    /** The coupon is full for good and these are all its holders (a claim reported it `complete`). */
    rememberComplete(couponId: number, holders: number[], nowMs: number) {
      if (size + holders.length > MAX_ENTRIES) {
        byCoupon.clear()
        complete.clear()
        size = 0
      }
      const previous = complete.get(couponId)
      if (previous) size -= previous.holders.size
      complete.set(couponId, { holders: new Set(holders), untilMs: nowMs + ttlMs })
      size += holders.length
    },

    remember(couponId: number, userId: number, refusal: FinalRefusal, nowMs: number) {
      if (size >= MAX_ENTRIES) {
        byCoupon.clear()
        complete.clear()
        size = 0
      }
      let users = byCoupon.get(couponId)
      if (!users) {
        users = new Map()
        byCoupon.set(couponId, users)
      }
      if (!users.has(userId)) size++
      users.set(userId, { refusal, untilMs: nowMs + ttlMs })
    },
  }
}

export type FinalRefusals = ReturnType<typeof createFinalRefusals>
