import { randomUUID } from 'node:crypto'
import { and, asc, eq, gt, inArray } from 'drizzle-orm'
import { coupons, userCoupons } from '../db/schema'
import { inTransaction } from '../db/transaction'
import type { Deps } from '../deps'
import { AppError } from '../errors'

/**
 * The Redis side of first-come-first-served issuing. Per coupon:
 *
 * - `state`   hash { gen, total, startsAt, endsAt, soldOut }. Its presence is the "loaded" marker: no claim
 *             is decided without it, so after a restart or a flush nothing is issued until it is rebuilt.
 * - `winners` set of user ids holding the coupon or being given it right now (confirmed + pending).
 * - `pending` zset user id → claim time: claims whose MySQL commit has not been confirmed yet.
 *
 * One script (couponClaim, shared/redis/scripts.ts) decides a claim atomically (holder? window? room?)
 * and records the winner, so sold-out and duplicate requests never reach MySQL. MySQL stays the ground
 * truth (issued_quantity < total_quantity guard, unique (coupon_id, user_id)); every place where Redis can
 * be stale only ever makes it admit a claim that MySQL then refuses, never one MySQL would have to take
 * back.
 */
export type IssueStateDeps = Pick<Deps, 'db' | 'redis' | 'logger' | 'metrics'>

/** Above any persist's run time (5 transaction attempts × 5 s lock wait + backoff): older claims are orphans. */
export const PENDING_STALE_MS = 120_000
const REBUILD_LOCK_MS = 10_000
/** How long a request waits for another process's rebuild before answering 503. */
const REBUILD_WAIT_MS = 5_000
const REBUILD_POLL_MS = 20
const REBUILD_CHUNK = 5_000
const RECONCILE_BATCH = 500

/** The `{id}` hash tag keeps one coupon's keys in one Redis Cluster slot, as its scripts require. */
export function stateKeys(couponId: number) {
  const tag = `coupon:{${couponId}}`
  return {
    state: `${tag}:state`,
    winners: `${tag}:winners`,
    pending: `${tag}:pending`,
    rebuildLock: `${tag}:rebuild`,
    reconcileLock: `${tag}:reconcile`,
    staging: (token: string) => `${tag}:staging:${token}`,
  }
}

export type ClaimOutcome = 'CLAIMED' | 'ALREADY_ISSUED' | 'SOLD_OUT' | 'NOT_ISSUABLE'
/**
 * `final`: a refusal nothing can undo (the user holds the coupon in MySQL, or it is full there), which
 * this process may therefore answer again without asking (final-refusals.ts). `complete`: a final
 * SOLD_OUT with no claim pending, so the winners set is exactly the holders in MySQL, for good.
 */
export type Claim = { outcome: ClaimOutcome; gen: string; stale: boolean; final: boolean; complete: boolean }

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export const issuingUnavailable = (detail: string, cause?: unknown) =>
  new AppError('SERVICE_UNAVAILABLE', detail, { retryAfterSeconds: 1, cause })

const couponNotFound = (couponId: number) =>
  new AppError('COUPON_NOT_FOUND', `Coupon ${couponId} does not exist`)

/**
 * Rebuilds the coupon's state from MySQL unless another process is doing it ('busy'). The coupon row is
 * read FOR UPDATE: every persist takes its slot with an UPDATE of that row before inserting the user
 * coupon, so the lock waits for persists in flight to commit and holds new ones off while the holders are
 * read, and the set and the count are one consistent picture. What it cannot see are claims made in the
 * lost state whose persist has not reached MySQL yet; those can make Redis admit too many, which MySQL's
 * guard refuses and the refusal corrects (see release with soldOut, and confirm).
 */
export async function rebuildState(
  deps: IssueStateDeps,
  couponId: number,
): Promise<'rebuilt' | 'superseded' | 'busy' | 'missing'> {
  const { db, redis } = deps
  const keys = stateKeys(couponId)
  const token = randomUUID()
  if ((await redis.set(keys.rebuildLock, token, 'PX', REBUILD_LOCK_MS, 'NX')) !== 'OK') return 'busy'
  const staging = keys.staging(token)
  try {
    const snapshot = await inTransaction(db, async (tx) => {
      await redis.del(staging)
      const [row] = await tx
        .select({
          total: coupons.totalQuantity,
          issued: coupons.issuedQuantity,
          startsAt: coupons.issueStartsAt,
          endsAt: coupons.issueEndsAt,
        })
        .from(coupons)
        .where(eq(coupons.id, couponId))
        .for('update')
      if (!row) return null
      let holders = 0
      let after = 0
      for (;;) {
        const chunk = await tx
          .select({ userId: userCoupons.userId })
          .from(userCoupons)
          .where(and(eq(userCoupons.couponId, couponId), gt(userCoupons.userId, after)))
          .orderBy(asc(userCoupons.userId))
          .limit(REBUILD_CHUNK)
        if (chunk.length > 0) {
          const ids = chunk.map((r) => r.userId)
          const staged = await redis.couponStage(keys.rebuildLock, staging, token, REBUILD_LOCK_MS, ...ids)
          if (staged !== 1) return 'superseded' as const
          holders += ids.length
          after = ids[ids.length - 1] ?? after
        }
        if (chunk.length < REBUILD_CHUNK) break
      }
      return { ...row, holders }
    })
    if (snapshot === null) return 'missing'
    if (snapshot === 'superseded') return 'superseded'
    if (snapshot.holders !== snapshot.issued) {
      deps.logger.error('coupon holders differ from issued_quantity', { couponId, ...snapshot })
    }
    const committed = await redis.couponCommitRebuild(
      keys.state,
      keys.winners,
      keys.pending,
      keys.rebuildLock,
      staging,
      token,
      snapshot.total,
      snapshot.startsAt?.getTime() ?? '',
      snapshot.endsAt?.getTime() ?? '',
      snapshot.issued >= snapshot.total ? '1' : '0',
    )
    const outcome = committed === 1 ? 'rebuilt' : 'superseded'
    deps.metrics.couponStateRebuilds.inc({ outcome })
    deps.logger.info('coupon issuing state rebuilt from MySQL', {
      couponId,
      outcome,
      holders: snapshot.holders,
    })
    return outcome
  } finally {
    await Promise.allSettled([redis.deleteIfEquals(keys.rebuildLock, token), redis.del(staging)])
  }
}

/** Waits until the state is loaded: rebuilds it here, or waits for the process that is rebuilding it. */
async function ensureLoaded(deps: IssueStateDeps, couponId: number, deadline: number): Promise<void> {
  const keys = stateKeys(couponId)
  for (;;) {
    const outcome = await rebuildState(deps, couponId)
    if (outcome === 'missing') throw couponNotFound(couponId)
    if (outcome !== 'busy' && (await deps.redis.exists(keys.state)) === 1) return
    if (Date.now() > deadline) {
      throw issuingUnavailable('Coupon issuing is being restored; retry shortly')
    }
    await sleep(REBUILD_POLL_MS)
    if ((await deps.redis.exists(keys.state)) === 1) return
  }
}

/**
 * The one atomic decision: holder → ALREADY_ISSUED, outside the window → NOT_ISSUABLE, no room → SOLD_OUT,
 * else the user is recorded as a (pending) winner. Loads the state from MySQL first when it is missing.
 */
export async function claimSlot(
  deps: IssueStateDeps,
  couponId: number,
  userId: number,
  now: Date,
): Promise<Claim> {
  const keys = stateKeys(couponId)
  const deadline = Date.now() + REBUILD_WAIT_MS
  for (;;) {
    const [outcome, gen, flag] = await deps.redis.couponClaim(
      keys.state,
      keys.winners,
      keys.pending,
      userId,
      now.getTime(),
      now.getTime() - PENDING_STALE_MS,
    )
    if (outcome !== 'NOT_LOADED') {
      return {
        outcome: outcome as ClaimOutcome,
        gen,
        stale: flag === 'stale',
        final: flag === 'final' || flag === 'complete',
        complete: flag === 'complete',
      }
    }
    await ensureLoaded(deps, couponId, deadline)
  }
}

/** The user holds the coupon in MySQL (committed, or found there): their claim is settled. */
export async function confirmClaim(deps: IssueStateDeps, couponId: number, userId: number, gen: string) {
  const keys = stateKeys(couponId)
  await deps.redis.couponConfirm(keys.state, keys.pending, userId, gen)
}

/**
 * Gives a claim's slot back (the user leaves the winners set) when its persist did not happen. With
 * `soldOut`, MySQL refused because it is full: Redis admitted too many (its state was rebuilt while claims
 * of the lost state were still on their way), and since issued_quantity never goes down, every later
 * request can be refused in Redis again.
 */
export async function releaseClaim(
  deps: IssueStateDeps,
  couponId: number,
  userId: number,
  gen: string,
  options: { soldOut?: boolean } = {},
): Promise<boolean> {
  const keys = stateKeys(couponId)
  const released = await deps.redis.couponRelease(
    keys.state,
    keys.winners,
    keys.pending,
    userId,
    gen,
    options.soldOut ? '1' : '0',
  )
  return released === 1
}

/**
 * Settles claims pending for longer than any persist can take: their process died between the claim and
 * the commit (or could not report back). Each is checked in MySQL: a holder is confirmed, anyone else's slot
 * is given back. Runs only when a claim reports a stale entry, so MySQL is not touched otherwise.
 */
export async function reconcileStaleClaims(
  deps: IssueStateDeps,
  couponId: number,
  gen: string,
  now: Date,
): Promise<number> {
  const { db, redis } = deps
  const keys = stateKeys(couponId)
  const token = randomUUID()
  if ((await redis.set(keys.reconcileLock, token, 'PX', REBUILD_LOCK_MS, 'NX')) !== 'OK') return 0
  try {
    const raw = await redis.zrangebyscore(
      keys.pending,
      '-inf',
      `(${now.getTime() - PENDING_STALE_MS}`,
      'WITHSCORES',
      'LIMIT',
      0,
      RECONCILE_BATCH,
    )
    const stale: Array<{ userId: number; score: string }> = []
    for (let i = 0; i + 1 < raw.length; i += 2) {
      stale.push({ userId: Number(raw[i]), score: raw[i + 1] as string })
    }
    if (stale.length === 0) return 0
    const held = await db
      .select({ userId: userCoupons.userId })
      .from(userCoupons)
      .where(
        and(
          eq(userCoupons.couponId, couponId),
          inArray(
            userCoupons.userId,
            stale.map((s) => s.userId),
          ),
        ),
      )
    const holders = new Set(held.map((r) => r.userId))
    const settled = await redis.couponSettleStale(
      keys.state,
      keys.winners,
      keys.pending,
      gen,
      ...stale.flatMap((s) => [s.userId, s.score, holders.has(s.userId) ? '1' : '0']),
    )
    deps.logger.warn('orphaned coupon claims settled', {
      couponId,
      settled,
      confirmed: holders.size,
      givenBack: stale.length - holders.size,
    })
    return settled
  } finally {
    await redis.deleteIfEquals(keys.reconcileLock, token).catch(() => undefined)
  }
}

/**
 * The holders of a coupon whose claim reported it `complete` (full, nothing pending): the winners set,
 * which is then exactly its holders in MySQL. Null when the set is not all there (flushed and not rebuilt
 * yet: fewer members than the total).
 */
export async function completeHolders(
  deps: IssueStateDeps,
  couponId: number,
  totalQuantity: number,
): Promise<number[] | null> {
  const members = await deps.redis.smembers(stateKeys(couponId).winners)
  return members.length >= totalQuantity ? members.map(Number) : null
}

/** What Redis would still admit, loading the state when it is missing; null if it cannot tell. */
export async function remainingInRedis(deps: IssueStateDeps, couponId: number): Promise<number | null> {
  const keys = stateKeys(couponId)
  const read = () => deps.redis.couponRemaining(keys.state, keys.winners)
  const first = await read()
  if (first >= 0) return first
  await ensureLoaded(deps, couponId, Date.now() + REBUILD_WAIT_MS)
  const second = await read()
  return second >= 0 ? second : null
}
