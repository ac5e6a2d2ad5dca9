import { eq, sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { coupons, userCoupons } from '../db/schema'
import type { RuntimeDeps } from '../runtime/deps'
import { createTestDeps, holderInMysql, uniqueUserId } from '../testing/harness'
import { DAY_MS } from './coupons'
import { createCouponIssuer } from './issue'
import {
  claimSlot,
  confirmClaim,
  PENDING_STALE_MS,
  rebuildState,
  releaseClaim,
  remainingInRedis,
  stateKeys,
} from './issue-state'

let deps: RuntimeDeps

beforeAll(async () => {
  deps = await createTestDeps()
})
afterAll(async () => {
  await deps.close()
})

async function insertCoupon(totalQuantity: number): Promise<number> {
  const [row] = await deps.db
    .insert(coupons)
    .values({
      name: 'state test',
      type: 'FIXED',
      value: 100,
      minOrderAmount: 0,
      totalQuantity,
      issuedQuantity: 0,
      validDays: 1,
      createdAt: new Date(),
    })
    .$returningId()
  if (!row) throw new Error('no coupon id')
  return row.id
}

async function holders(couponId: number) {
  const rows = await deps.db
    .select({ userId: userCoupons.userId })
    .from(userCoupons)
    .where(eq(userCoupons.couponId, couponId))
  return rows.map((r) => r.userId).sort()
}

const rebuilds = async () =>
  ((await deps.metrics.registry.getSingleMetric('coupon_state_rebuilds_total')?.get())?.values ?? [])
    .filter((v) => v.labels.outcome === 'rebuilt')
    .reduce((sum, v) => sum + v.value, 0)

/** What a process that died after its claim leaves behind, made old enough to count as orphaned. */
async function orphanClaim(couponId: number, userId: number) {
  const claim = await claimSlot(deps, couponId, userId, new Date())
  expect(claim.outcome).toBe('CLAIMED')
  await deps.redis.zadd(stateKeys(couponId).pending, Date.now() - PENDING_STALE_MS - 1_000, String(userId))
  return claim
}

const issuer = () => createCouponIssuer(deps)
const issueTo = (couponId: number, userId: number) => issuer().issue({ couponId, userId })

describe('the Redis issuing state', () => {
  it('is loaded from MySQL once when 100 concurrent claims find it missing', async () => {
    const couponId = await insertCoupon(1_000)
    const existing = [uniqueUserId(), uniqueUserId()]
    for (const userId of existing) await holderInMysql(deps, couponId, userId)
    const before = await rebuilds()
    const users = Array.from({ length: 100 }, () => uniqueUserId())
    const claims = await Promise.all(
      [...users, ...existing].map((u) => claimSlot(deps, couponId, u, new Date())),
    )
    expect(claims.slice(0, 100).every((c) => c.outcome === 'CLAIMED')).toBe(true)
    expect(claims.slice(100).map((c) => c.outcome)).toEqual(['ALREADY_ISSUED', 'ALREADY_ISSUED'])
    expect(new Set(claims.map((c) => c.gen)).size).toBe(1)
    expect(await rebuilds()).toBe(before + 1)
    const keys = stateKeys(couponId)
    expect(await deps.redis.scard(keys.winners)).toBe(102)
    expect(await deps.redis.zcard(keys.pending)).toBe(100)
    expect(await remainingInRedis(deps, couponId)).toBe(898)
  })

  it('waits for a persist in flight (the coupon row is locked) and includes its holder', async () => {
    const couponId = await insertCoupon(3)
    const userId = uniqueUserId()
    let commit: () => void = () => undefined
    const gate = new Promise<void>((resolve) => {
      commit = resolve
    })
    let locked: () => void = () => undefined
    const holding = new Promise<void>((resolve) => {
      locked = resolve
    })
    const persist = deps.db.transaction(async (tx) => {
      await tx
        .update(coupons)
        .set({ issuedQuantity: sql`${coupons.issuedQuantity} + 1` })
        .where(eq(coupons.id, couponId))
      const now = new Date()
      await tx
        .insert(userCoupons)
        .values({ couponId, userId, issuedAt: now, expiresAt: new Date(now.getTime() + DAY_MS) })
      locked()
      await gate
    })
    await holding
    let finished = false
    const rebuild = rebuildState(deps, couponId).then((outcome) => {
      finished = true
      return outcome
    })
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(finished).toBe(false)
    commit()
    await persist
    expect(await rebuild).toBe('rebuilt')
    expect(await deps.redis.smembers(stateKeys(couponId).winners)).toEqual([String(userId)])
    expect((await claimSlot(deps, couponId, userId, new Date())).outcome).toBe('ALREADY_ISSUED')
    expect(await remainingInRedis(deps, couponId)).toBe(2)
  })

  it('ignores a give-back from a generation that a rebuild replaced', async () => {
    const couponId = await insertCoupon(5)
    const x = uniqueUserId()
    const old = await claimSlot(deps, couponId, x, new Date())
    expect(old.outcome).toBe('CLAIMED')
    const keys = stateKeys(couponId)
    await deps.redis.del(keys.state, keys.winners, keys.pending) // this coupon's state lost
    const again = await claimSlot(deps, couponId, x, new Date())
    expect(again.outcome).toBe('CLAIMED')
    expect(again.gen).not.toBe(old.gen)
    expect(await releaseClaim(deps, couponId, x, old.gen)).toBe(false)
    expect(await deps.redis.sismember(keys.winners, String(x))).toBe(1)
    expect(await releaseClaim(deps, couponId, x, again.gen)).toBe(true)
    expect(await deps.redis.sismember(keys.winners, String(x))).toBe(0)
    expect(await remainingInRedis(deps, couponId)).toBe(5)
  })

  it('flags a refusal final only once no pending claim can give its slot back', async () => {
    const couponId = await insertCoupon(1)
    const [a, b] = [uniqueUserId(), uniqueUserId()]
    const claim = (userId: number) =>
      claimSlot(deps, couponId, userId, new Date()).then(({ outcome, final }) => ({ outcome, final }))
    const won = await claimSlot(deps, couponId, a, new Date())
    expect(won.outcome).toBe('CLAIMED')
    expect(await claim(b)).toEqual({ outcome: 'SOLD_OUT', final: false })
    expect(await claim(a)).toEqual({ outcome: 'ALREADY_ISSUED', final: false })
    await holderInMysql(deps, couponId, a)
    await confirmClaim(deps, couponId, a, won.gen)
    expect(await claim(b)).toEqual({ outcome: 'SOLD_OUT', final: true })
    expect(await claim(a)).toEqual({ outcome: 'ALREADY_ISSUED', final: true })
  })

  it('refuses claims until a window opens and after it closes', async () => {
    const couponId = await insertCoupon(5)
    const starts = new Date(Date.now() + DAY_MS)
    const ends = new Date(Date.now() + 2 * DAY_MS)
    await deps.db
      .update(coupons)
      .set({ issueStartsAt: starts, issueEndsAt: ends })
      .where(eq(coupons.id, couponId))
    const userId = uniqueUserId()
    const at = (ms: number) => claimSlot(deps, couponId, userId, new Date(ms))
    expect((await at(starts.getTime() - 1)).outcome).toBe('NOT_ISSUABLE')
    expect((await at(ends.getTime())).outcome).toBe('NOT_ISSUABLE')
    expect((await at(starts.getTime())).outcome).toBe('CLAIMED')
  })
})

describe('claims orphaned by a process that died between claim and commit', () => {
  it('are given back once stale, so the slot goes to the next caller', async () => {
    const couponId = await insertCoupon(1)
    const [x, y] = [uniqueUserId(), uniqueUserId()]
    const fresh = await claimSlot(deps, couponId, x, new Date())
    expect(fresh.outcome).toBe('CLAIMED')
    // Not stale yet: the persist could still be running, so the slot stays taken.
    await expect(issueTo(couponId, y)).rejects.toMatchObject({ code: 'COUPON_SOLD_OUT' })
    await deps.redis.zadd(stateKeys(couponId).pending, Date.now() - PENDING_STALE_MS - 1_000, String(x))

    const issued = await issueTo(couponId, y)
    expect(issued).toMatchObject({ couponId, status: 'AVAILABLE' })
    await expect(issueTo(couponId, x)).rejects.toMatchObject({ code: 'COUPON_SOLD_OUT' })
    expect(await holders(couponId)).toEqual([y])
    expect(await deps.redis.zcard(stateKeys(couponId).pending)).toBe(0)
  })

  it('are confirmed, not given back, when their commit did happen', async () => {
    const couponId = await insertCoupon(1)
    const [x, y] = [uniqueUserId(), uniqueUserId()]
    await orphanClaim(couponId, x)
    await holderInMysql(deps, couponId, x) // committed, but the process died before confirming in Redis

    await expect(issueTo(couponId, y)).rejects.toMatchObject({ code: 'COUPON_SOLD_OUT' })
    await expect(issueTo(couponId, x)).rejects.toMatchObject({ code: 'COUPON_ALREADY_ISSUED' })
    expect(await holders(couponId)).toEqual([x])
    const keys = stateKeys(couponId)
    expect(await deps.redis.zcard(keys.pending)).toBe(0)
    expect(await deps.redis.smembers(keys.winners)).toEqual([String(x)])
  })

  it('let the user whose claim was orphaned try again and get it', async () => {
    const couponId = await insertCoupon(5)
    const x = uniqueUserId()
    await orphanClaim(couponId, x)
    const issued = await issueTo(couponId, x)
    expect(issued).toMatchObject({ couponId, status: 'AVAILABLE' })
    expect(await holders(couponId)).toEqual([x])
    expect(await remainingInRedis(deps, couponId)).toBe(4)
  })
})
