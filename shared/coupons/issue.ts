import { createCombiner } from '../combiner'
import { poolOf } from '../db/client'
import { AppError, isAppError } from '../errors'
import { KeyTaken, noKey, type RecordEffect } from '../idempotency/idempotency'
import { type CouponDefinition, type CouponDeps, createCouponCatalog, DEFINITION_TTL_MS } from './coupons'
import { COMPLETE_MAX, createFinalRefusals, type FinalRefusal } from './final-refusals'
import {
  type Claim,
  type ClaimOutcome,
  claimSlot,
  completeHolders,
  confirmClaim,
  issuingUnavailable,
  reconcileStaleClaims,
  releaseClaim,
} from './issue-state'
import {
  type IssuedCoupon,
  type PersistOutcome,
  type PersistRequest,
  persistBatch,
  RefusedByMysql,
} from './persist'

export type { IssuedCoupon } from './persist'

export type IssueRequest = {
  couponId: number
  /** The caller: a coupon is always issued to the user in the token. */
  userId: number
}

type Refusal = Exclude<ClaimOutcome, 'CLAIMED'>

const refusalsOf = (id: number): Record<Refusal, AppError> => ({
  ALREADY_ISSUED: new AppError('COUPON_ALREADY_ISSUED', `You already hold coupon ${id}`),
  SOLD_OUT: new AppError('COUPON_SOLD_OUT', `Coupon ${id} has no coupons left to issue`),
  NOT_ISSUABLE: new AppError(
    'COUPON_NOT_ISSUABLE',
    `Coupon ${id} is not being issued now (outside its issuance window)`,
  ),
})

/** Winners written together at most (docs/coupons.md, group commit). */
export const MAX_BATCH = 100
/**
 * Batches in flight at once per process: batches of one coupon queue on its row in MySQL anyway, so a
 * second one only overlaps round trips (and lets another coupon's winners through meanwhile).
 */
export const BATCHES_IN_FLIGHT = 2

/**
 * First come, first served issuing at Redis speed (see issue-state.ts for the Redis side).
 *
 * 1. The definition comes from Redis (an unknown id is cached too), then one script decides the claim.
 *    Refusals end here without touching MySQL; the ones nothing can undo are remembered, and a user
 *    asking again is answered from memory without asking Redis either (final-refusals.ts).
 * 2. A winner is persisted in MySQL, with the request's Idempotency-Key (`record`), together with the
 *    winners that arrived while the previous batch was being written (persist.ts: one transaction, one
 *    guarded UPDATE of the slots, one INSERT of every winner's row). The claim is made before, outside
 *    the transaction, so a deadlock retry of the transaction never meets its own claim as "already
 *    issued".
 * 3. After the commit the claim is confirmed. If MySQL refused or the transaction failed, the slot is given
 *    back (the user leaves the winners set) and the client gets MySQL's verdict or a 503.
 *
 * A retry with the Idempotency-Key of a request that issued the coupon never gets here: the route layer
 * replays it before (see shared/idempotency).
 */
export function createCouponIssuer(deps: CouponDeps) {
  const catalog = createCouponCatalog(deps)
  // The counter's child per outcome (a bounded set), looked up in a map rather than hashed on every inc.
  const counters = new Map<string, { inc(): void }>()
  const count = (outcome: string) => {
    let counter = counters.get(outcome)
    if (!counter) {
      counter = deps.metrics.couponIssues.labels({ outcome })
      counters.set(outcome, counter)
    }
    counter.inc()
  }
  // A refusal is the same answer for every caller of a coupon, and the error is only read (code, detail)
  // by the problem renderer: one instance per coupon and outcome is thrown again instead of building one
  // per request, which a burst of refusals did ten thousand times. Bounded like the definitions' cache.
  const refusalErrors = new Map<number, Record<Refusal, AppError>>()
  const refusalError = (couponId: number, outcome: Refusal): AppError => {
    let errors = refusalErrors.get(couponId)
    if (!errors) {
      if (refusalErrors.size >= 10_000) refusalErrors.clear()
      errors = refusalsOf(couponId)
      refusalErrors.set(couponId, errors)
    }
    return errors[outcome]
  }
  // One per process, shared by every app that issues coupons in it, so that their winners batch together.
  const persist = deps.once('coupon-issue-combiner', () => {
    const pool = poolOf(deps.db)
    const onRetry = () => deps.metrics.transactionRetries.inc({ operation: 'coupon-issue' })
    return createCombiner<PersistRequest, PersistOutcome>((batch) => persistBatch(pool, batch, { onRetry }), {
      maxBatch: MAX_BATCH,
      concurrency: BATCHES_IN_FLIGHT,
    })
  })

  const finalRefusals = deps.once('coupon-final-refusals', () => createFinalRefusals(DEFINITION_TTL_MS))

  /** A remembered final refusal, as the claim script would answer it now (the window is checked first). */
  const remembered = (coupon: CouponDefinition, userId: number, now: Date): AppError | undefined => {
    const refusal = finalRefusals.get(coupon.id, userId, now.getTime())
    if (refusal === undefined) return undefined
    const closed = coupon.issueEndsAt !== null && now.getTime() >= Date.parse(coupon.issueEndsAt)
    const outcome = refusal === 'SOLD_OUT' && closed ? 'NOT_ISSUABLE' : refusal
    count(outcome.toLowerCase())
    return refusalError(coupon.id, outcome)
  }
  const learn = (couponId: number, userId: number, refusal: FinalRefusal, now: Date) =>
    finalRefusals.remember(couponId, userId, refusal, now.getTime())
  // Holder lists being fetched, one fetch per coupon and process at a time; the request that learnt the
  // coupon is complete waits for it (one SMEMBERS per coupon and process), the others meanwhile do not.
  const fetching = new Set<number>()
  const learnComplete = async (coupon: CouponDefinition, now: Date) => {
    if (coupon.totalQuantity > COMPLETE_MAX || fetching.has(coupon.id)) return
    if (finalRefusals.isComplete(coupon.id)) return
    fetching.add(coupon.id)
    try {
      const holders = await completeHolders(deps, coupon.id, coupon.totalQuantity)
      if (holders) finalRefusals.rememberComplete(coupon.id, holders, now.getTime())
    } catch (error) {
      deps.logger.warn('coupon holders not fetched; refusals keep asking Redis', {
        couponId: coupon.id,
        error,
      })
    } finally {
      fetching.delete(coupon.id)
    }
  }

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
      const known = remembered(coupon, userId, now)
      if (known) throw known
      const won = await claim(couponId, userId, now)
      if (won.outcome !== 'CLAIMED') {
        if (won.final && won.outcome !== 'NOT_ISSUABLE') learn(couponId, userId, won.outcome, now)
        if (won.complete) await learnComplete(coupon, now)
        count(won.outcome.toLowerCase())
        throw refusalError(couponId, won.outcome)
      }

      let outcome: PersistOutcome
      try {
        outcome = await persist.submit({ coupon, userId, record, now })
      } catch (error) {
        outcome = { error: error instanceof Error ? error : new Error(String(error)) }
      }
      if ('issued' in outcome) {
        learn(couponId, userId, 'ALREADY_ISSUED', now)
        await settle('confirm', () => confirmClaim(deps, couponId, userId, won.gen))
        count('issued')
        return outcome.issued
      }
      const { error } = outcome
      if (error instanceof RefusedByMysql && error.code === 'COUPON_ALREADY_ISSUED') {
        // Redis had lost this holder (rebuilt while their issue was in flight): now it knows again.
        learn(couponId, userId, 'ALREADY_ISSUED', now)
        await settle('confirm', () => confirmClaim(deps, couponId, userId, won.gen))
        count('mysql_already_issued')
        throw error
      }
      const soldOut = error instanceof RefusedByMysql && error.code === 'COUPON_SOLD_OUT'
      if (soldOut) learn(couponId, userId, 'SOLD_OUT', now)
      await settle('release', () => releaseClaim(deps, couponId, userId, won.gen, { soldOut }))
      count(soldOut ? 'mysql_sold_out' : 'failed')
      // A concurrent request with the same Idempotency-Key committed first: the idempotency layer
      // answers with its response.
      if (isAppError(error) || error instanceof KeyTaken) throw error
      deps.logger.error('coupon issue could not be recorded', { couponId, userId, error })
      throw issuingUnavailable('The coupon could not be issued right now; retry shortly', error)
    },
  }
}

export type CouponIssuer = ReturnType<typeof createCouponIssuer>
