import { and, eq, sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCouponIssuer } from '../../shared/coupons/issue'
import { claimSlot, releaseClaim, stateKeys } from '../../shared/coupons/issue-state'
import { coupons, userCoupons } from '../../shared/db/schema'
import type { RuntimeDeps } from '../../shared/runtime/deps'
import { countMysqlUse, waitForRedis } from '../../shared/testing/connections'
import {
  call,
  createTestApp,
  createTestDeps,
  expectProblemShape,
  type TestResponse,
  tokenFor,
  uniqueUserId,
} from '../../shared/testing/harness'
import { type OwnRedis, startOwnRedis } from '../../shared/testing/own-redis'
import createAdminCouponCreateApp from '../admin-coupon-create/handler'
import createBalanceChargeApp from '../balance-charge/handler'
import createCouponGetApp from '../coupon-get/handler'
import createUserCouponsListApp from '../user-coupons-list/handler'
import createCouponIssueApp from './handler'

let deps: RuntimeDeps
let app: ReturnType<typeof createTestApp>
let admin: string

const DAY_MS = 24 * 3600 * 1000

beforeAll(async () => {
  deps = await createTestDeps()
  app = createTestApp(deps, [
    createAdminCouponCreateApp,
    createCouponGetApp,
    createCouponIssueApp,
    createUserCouponsListApp,
    createBalanceChargeApp,
  ])
  admin = await tokenFor(deps, uniqueUserId(), 'admin')
})
afterAll(async () => {
  await deps.close()
})

type CouponInput = {
  name?: string
  type?: 'FIXED' | 'PERCENT'
  value?: number
  totalQuantity?: number
  minOrderAmount?: number
  issueStartsAt?: string
  issueEndsAt?: string
  validDays?: number
}

async function createCoupon(input: CouponInput = {}): Promise<number> {
  const res = await call(app, 'POST', '/v1/admin/coupons', {
    token: admin,
    body: { name: 'test coupon', type: 'FIXED', value: 1_000, totalQuantity: 10, validDays: 7, ...input },
  })
  expect(res.status).toBe(201)
  return (res.body as { id: number }).id
}

async function issue(couponId: number, userId: number, headers: Record<string, string> = {}) {
  return call(app, 'POST', `/v1/coupons/${couponId}/issue`, {
    token: await tokenFor(deps, userId),
    headers,
  })
}

const codeOf = (res: TestResponse) =>
  res.status === 201 ? 'ISSUED' : String((res.body as { code?: string }).code ?? res.status)

const tally = (responses: TestResponse[]) => {
  const counts: Record<string, number> = {}
  for (const res of responses) counts[codeOf(res)] = (counts[codeOf(res)] ?? 0) + 1
  return counts
}

async function mysqlState(couponId: number) {
  const [row] = await deps.db.select().from(coupons).where(eq(coupons.id, couponId))
  const holders = await deps.db
    .select({ userId: userCoupons.userId })
    .from(userCoupons)
    .where(eq(userCoupons.couponId, couponId))
  return { issued: row?.issuedQuantity, holders: holders.map((h) => h.userId) }
}

const remainingOf = async (couponId: number) =>
  ((await call(app, 'GET', `/v1/coupons/${couponId}`)).body as { remainingQuantity: number })
    .remainingQuantity

describe('POST /v1/coupons/:couponId/issue', () => {
  it('issues one coupon to the caller with the documented shape, expiring validDays later', async () => {
    const couponId = await createCoupon({ type: 'PERCENT', value: 15, minOrderAmount: 20_000, validDays: 3 })
    const userId = uniqueUserId()
    const res = await issue(couponId, userId)
    expect(res.status).toBe(201)
    const body = res.body as Record<string, unknown> & { issuedAt: string; expiresAt: string }
    expect(Object.keys(body)).toEqual([
      'userCouponId',
      'couponId',
      'name',
      'type',
      'value',
      'minOrderAmount',
      'status',
      'issuedAt',
      'expiresAt',
    ])
    expect(body).toMatchObject({
      couponId,
      name: 'test coupon',
      type: 'PERCENT',
      value: 15,
      minOrderAmount: 20_000,
      status: 'AVAILABLE',
    })
    expect(Math.abs(Date.parse(body.issuedAt) - Date.now())).toBeLessThan(10_000)
    expect(Date.parse(body.expiresAt) - Date.parse(body.issuedAt)).toBe(3 * DAY_MS)

    const [row] = await deps.db
      .select()
      .from(userCoupons)
      .where(and(eq(userCoupons.couponId, couponId), eq(userCoupons.userId, userId)))
    expect(row).toMatchObject({ id: body.userCouponId, status: 'AVAILABLE' })
    expect(row?.expiresAt.toISOString()).toBe(body.expiresAt)
    expect(await mysqlState(couponId)).toEqual({ issued: 1, holders: [userId] })
    expect(await remainingOf(couponId)).toBe(9)
  })

  it('200 concurrent users for 30 coupons: exactly 30 issued, 170 sold out, 30 rows in MySQL', async () => {
    const couponId = await createCoupon({ totalQuantity: 30 })
    const users = Array.from({ length: 200 }, () => uniqueUserId())
    const tokens = await Promise.all(users.map((u) => tokenFor(deps, u)))
    const responses = await Promise.all(
      users.map((_, i) => call(app, 'POST', `/v1/coupons/${couponId}/issue`, { token: tokens[i] })),
    )
    expect(tally(responses)).toEqual({ ISSUED: 30, COUPON_SOLD_OUT: 170 })
    for (const res of responses.filter((r) => r.status === 409))
      expectProblemShape(res, 409, 'COUPON_SOLD_OUT')

    const winners = users.filter((_, i) => responses[i]?.status === 201)
    const state = await mysqlState(couponId)
    expect(state.issued).toBe(30)
    expect(state.holders.sort()).toEqual([...winners].sort())
    const ids = responses
      .filter((r) => r.status === 201)
      .map((r) => (r.body as { userCouponId: number }).userCouponId)
    expect(new Set(ids).size).toBe(30)

    const get = await call(app, 'GET', `/v1/coupons/${couponId}`)
    expect(get.body).toMatchObject({ id: couponId, totalQuantity: 30, remainingQuantity: 0 })
  })

  it('one user sending 10 concurrent requests gets exactly one coupon', async () => {
    const couponId = await createCoupon({ totalQuantity: 100 })
    const userId = uniqueUserId()
    const responses = await Promise.all(Array.from({ length: 10 }, () => issue(couponId, userId)))
    expect(tally(responses)).toEqual({ ISSUED: 1, COUPON_ALREADY_ISSUED: 9 })
    expect(await mysqlState(couponId)).toEqual({ issued: 1, holders: [userId] })
    expect(await remainingOf(couponId)).toBe(99)
  })

  it('answers sold-out, duplicate and unknown-coupon requests without touching MySQL', async () => {
    const couponId = await createCoupon({ totalQuantity: 5 })
    const winners = Array.from({ length: 5 }, () => uniqueUserId())
    expect(tally(await Promise.all(winners.map((u) => issue(couponId, u))))).toEqual({ ISSUED: 5 })
    const tokens = await Promise.all(
      [...winners, ...Array.from({ length: 100 }, () => uniqueUserId())].map((u) => tokenFor(deps, u)),
    )
    const other = await createCoupon()
    const unknown = 9_000_000_000_000 + Math.floor(Math.random() * 1e9)
    expectProblemShape(await issue(unknown, uniqueUserId()), 404, 'COUPON_NOT_FOUND') // now known as unknown
    const mysql = countMysqlUse(deps.db)
    try {
      // The counter sees MySQL work: a winner on another coupon takes connections.
      expect((await issue(other, uniqueUserId())).status).toBe(201)
      expect(mysql.count).toBeGreaterThan(0)
      const before = mysql.count
      const responses = await Promise.all(
        tokens.map((token) => call(app, 'POST', `/v1/coupons/${couponId}/issue`, { token })),
      )
      expect(tally(responses)).toEqual({ COUPON_ALREADY_ISSUED: 5, COUPON_SOLD_OUT: 100 })
      const missing = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          call(app, 'POST', `/v1/coupons/${unknown}/issue`, { token: tokens[i] }),
        ),
      )
      for (const res of missing) expectProblemShape(res, 404, 'COUPON_NOT_FOUND')
      expect((await call(app, 'GET', `/v1/coupons/${couponId}`)).body).toMatchObject({ remainingQuantity: 0 })
      expect(mysql.count).toBe(before)
    } finally {
      mysql.stop()
    }
  })

  it('refuses outside the issuance window with COUPON_NOT_ISSUABLE, and issues inside it', async () => {
    const now = Date.now()
    const future = await createCoupon({
      issueStartsAt: new Date(now + DAY_MS).toISOString(),
      issueEndsAt: new Date(now + 2 * DAY_MS).toISOString(),
    })
    const past = await createCoupon({
      issueStartsAt: new Date(now - 2 * DAY_MS).toISOString(),
      issueEndsAt: new Date(now - DAY_MS).toISOString(),
    })
    const open = await createCoupon({
      issueStartsAt: new Date(now - DAY_MS).toISOString(),
      issueEndsAt: new Date(now + DAY_MS).toISOString(),
    })
    const userId = uniqueUserId()
    expectProblemShape(await issue(future, userId), 409, 'COUPON_NOT_ISSUABLE')
    expectProblemShape(await issue(past, userId), 409, 'COUPON_NOT_ISSUABLE')
    expect((await issue(open, userId)).status).toBe(201)
    expect(await mysqlState(future)).toEqual({ issued: 0, holders: [] })
    expect(await mysqlState(past)).toEqual({ issued: 0, holders: [] })
  })

  it('answers 404 COUPON_NOT_FOUND for an unknown coupon, 400 for a bad id, 401 without a token', async () => {
    expectProblemShape(await issue(Number.MAX_SAFE_INTEGER, uniqueUserId()), 404, 'COUPON_NOT_FOUND')
    const token = await tokenFor(deps, uniqueUserId())
    for (const raw of ['0', '-1', 'abc', '1e3', '1.5', '12345678901234567890', '01']) {
      const res = await call(app, 'POST', `/v1/coupons/${raw}/issue`, { token })
      const problem = expectProblemShape(res, 400, 'VALIDATION_FAILED')
      expect(problem.errors).toEqual([expect.objectContaining({ path: 'couponId' })])
    }
    const couponId = await createCoupon()
    expectProblemShape(await call(app, 'POST', `/v1/coupons/${couponId}/issue`), 401, 'UNAUTHENTICATED')
    expectProblemShape(
      await call(app, 'POST', `/v1/coupons/${couponId}/issue`, { token: `${token}x` }),
      401,
      'UNAUTHENTICATED',
    )
    expect(await mysqlState(couponId)).toEqual({ issued: 0, holders: [] })
  })

  it('a burst of users asking over and over: exactly the total issued, one per user, every other answer a refusal', async () => {
    const couponId = await createCoupon({ totalQuantity: 40 })
    const users = Array.from({ length: 100 }, () => uniqueUserId())
    const tokens = new Map(await Promise.all(users.map(async (u) => [u, await tokenFor(deps, u)] as const)))
    // Every user 5 times, interleaved, all 500 at once: winners are written in batches meanwhile.
    const asks = Array.from({ length: 5 }, (_, round) =>
      round % 2 === 0 ? users : [...users].reverse(),
    ).flat()
    const responses = await Promise.all(
      asks.map((u) => call(app, 'POST', `/v1/coupons/${couponId}/issue`, { token: tokens.get(u) })),
    )
    const counts = tally(responses)
    expect(counts.ISSUED).toBe(40)
    expect(Object.keys(counts).sort()).toEqual(['COUPON_ALREADY_ISSUED', 'COUPON_SOLD_OUT', 'ISSUED'])
    const winners = asks.filter((_, i) => responses[i]?.status === 201)
    expect(new Set(winners).size).toBe(40)
    const state = await mysqlState(couponId)
    expect(state.issued).toBe(40)
    expect(state.holders.sort()).toEqual([...winners].sort())
    // Every later answer agrees with MySQL: holders are told they hold it, the others that it is gone.
    const again = await Promise.all(users.map((u) => issue(couponId, u)))
    for (const [i, u] of users.entries()) {
      expect(codeOf(again[i] as TestResponse)).toBe(
        winners.includes(u) ? 'COUPON_ALREADY_ISSUED' : 'COUPON_SOLD_OUT',
      )
    }
    expect(await remainingOf(couponId)).toBe(0)
  })

  it('never repeats a refusal that a given-back slot can undo: a user refused while a claim was pending is issued once it is released', async () => {
    const couponId = await createCoupon({ totalQuantity: 1 })
    const [pendingUser, waiting] = [uniqueUserId(), uniqueUserId()]
    // A claim in flight in another process: Redis is full, but only until that persist fails.
    const inFlight = await claimSlot(deps, couponId, pendingUser, new Date())
    expect(inFlight.outcome).toBe('CLAIMED')
    expectProblemShape(await issue(couponId, waiting), 409, 'COUPON_SOLD_OUT')
    // The same user's own pending claim: ALREADY_ISSUED, but not for good either.
    expectProblemShape(await issue(couponId, pendingUser), 409, 'COUPON_ALREADY_ISSUED')
    expect(await releaseClaim(deps, couponId, pendingUser, inFlight.gen)).toBe(true)

    expect((await issue(couponId, waiting)).status).toBe(201)
    expectProblemShape(await issue(couponId, pendingUser), 409, 'COUPON_SOLD_OUT')
    expect(await mysqlState(couponId)).toEqual({ issued: 1, holders: [waiting] })
  })

  it('answers a refusal remembered for good as the claim script would: NOT_ISSUABLE once the window has closed', async () => {
    const now = Date.now()
    const couponId = await createCoupon({
      totalQuantity: 1,
      issueStartsAt: new Date(now - DAY_MS).toISOString(),
      issueEndsAt: new Date(now + DAY_MS).toISOString(),
    })
    const [holder, late] = [uniqueUserId(), uniqueUserId()]
    expect((await issue(couponId, holder)).status).toBe(201)
    expectProblemShape(await issue(couponId, late), 409, 'COUPON_SOLD_OUT')
    expectProblemShape(await issue(couponId, late), 409, 'COUPON_SOLD_OUT')

    const issuer = createCouponIssuer(deps)
    const afterWindow = new Date(now + 2 * DAY_MS)
    const codeAt = (userId: number, at: Date) =>
      issuer.issue({ couponId, userId }, undefined, at).then(
        () => 'ISSUED',
        (error: { code?: string }) => error.code,
      )
    expect(await codeAt(late, afterWindow)).toBe('COUPON_NOT_ISSUABLE')
    expect(await codeAt(holder, afterWindow)).toBe('COUPON_ALREADY_ISSUED')
  })

  it('lists the issued coupon among the user coupons', async () => {
    const couponId = await createCoupon({ name: 'listed' })
    const userId = uniqueUserId()
    const issued = (await issue(couponId, userId)).body as Record<string, unknown>
    const list = await call(app, 'GET', `/v1/users/${userId}/coupons`, {
      token: await tokenFor(deps, userId),
    })
    expect(list.status).toBe(200)
    expect((list.body as { items: unknown[] }).items).toEqual([{ ...issued, usedAt: null, orderId: null }])
  })
})

describe('Idempotency-Key on issue', () => {
  it('replays the first 201 with Idempotent-Replayed: true and issues nothing more', async () => {
    const couponId = await createCoupon()
    const userId = uniqueUserId()
    const key = `issue-${uniqueUserId()}`
    const first = await issue(couponId, userId, { 'Idempotency-Key': key })
    expect(first.status).toBe(201)
    expect(first.headers.get('Idempotent-Replayed')).toBeNull()
    const again = await issue(couponId, userId, { 'Idempotency-Key': key })
    expect(again.status).toBe(201)
    expect(again.headers.get('Idempotent-Replayed')).toBe('true')
    expect(again.text).toBe(first.text)
    // Without the key the same request is a duplicate.
    expectProblemShape(await issue(couponId, userId), 409, 'COUPON_ALREADY_ISSUED')
    expect(await mysqlState(couponId)).toEqual({ issued: 1, holders: [userId] })
  })

  it('10 concurrent requests with one key: one issue, the others replays or IDEMPOTENCY_KEY_IN_USE', async () => {
    const couponId = await createCoupon()
    const userId = uniqueUserId()
    const key = `issue-${uniqueUserId()}`
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => issue(couponId, userId, { 'Idempotency-Key': key })),
    )
    const fresh = responses.filter((r) => r.status === 201 && r.headers.get('Idempotent-Replayed') === null)
    expect(fresh).toHaveLength(1)
    for (const res of responses) {
      if (res.status === 201) expect(res.text).toBe(fresh[0]?.text)
      else expectProblemShape(res, 409, 'IDEMPOTENCY_KEY_IN_USE')
    }
    expect(await mysqlState(couponId)).toEqual({ issued: 1, holders: [userId] })
  })

  it('gives the slot back when the key was used for another request (422 IDEMPOTENCY_KEY_REUSED)', async () => {
    const couponId = await createCoupon({ totalQuantity: 1 })
    const userId = uniqueUserId()
    const key = `charge-${uniqueUserId()}`
    const charged = await call(app, 'POST', `/v1/users/${userId}/balance/charge`, {
      token: await tokenFor(deps, userId),
      headers: { 'Idempotency-Key': key },
      body: { amount: 1_000 },
    })
    expect(charged.status).toBe(200)
    expectProblemShape(
      await issue(couponId, userId, { 'Idempotency-Key': key }),
      422,
      'IDEMPOTENCY_KEY_REUSED',
    )
    expect(await mysqlState(couponId)).toEqual({ issued: 0, holders: [] })
    expect(await deps.redis.sismember(stateKeys(couponId).winners, String(userId))).toBe(0)
    expect(await remainingOf(couponId)).toBe(1)
    // The only coupon is still there for the next caller.
    const other = uniqueUserId()
    expect((await issue(couponId, other)).status).toBe(201)
    expect(await mysqlState(couponId)).toEqual({ issued: 1, holders: [other] })
  })

  it('refuses a malformed key with 400 before anything happens', async () => {
    const couponId = await createCoupon()
    const userId = uniqueUserId()
    for (const key of ['k'.repeat(256), 'caf\u00e9']) {
      const res = await issue(couponId, userId, { 'Idempotency-Key': key })
      const problem = expectProblemShape(res, 400, 'VALIDATION_FAILED')
      expect(problem.errors).toEqual([expect.objectContaining({ path: 'headers.Idempotency-Key' })])
    }
    expect(await mysqlState(couponId)).toEqual({ issued: 0, holders: [] })
  })
})

describe('when MySQL refuses a winner Redis admitted', () => {
  /** Writes a holder straight to MySQL behind Redis's back: Redis's state is now stale by one holder. */
  async function holderBehindRedisBack(couponId: number, userId: number) {
    const now = new Date()
    await deps.db.insert(userCoupons).values({
      couponId,
      userId,
      status: 'AVAILABLE',
      issuedAt: now,
      expiresAt: new Date(now.getTime() + DAY_MS),
    })
    await deps.db
      .update(coupons)
      .set({ issuedQuantity: sql`${coupons.issuedQuantity} + 1` })
      .where(eq(coupons.id, couponId))
  }

  it('full in MySQL: 409 COUPON_SOLD_OUT, the slot is given back, and Redis refuses from then on', async () => {
    const couponId = await createCoupon({ totalQuantity: 2 })
    expect(await remainingOf(couponId)).toBe(2) // loads the Redis state
    const [x, y, z, w] = [uniqueUserId(), uniqueUserId(), uniqueUserId(), uniqueUserId()]
    await holderBehindRedisBack(couponId, x)
    await holderBehindRedisBack(couponId, y)

    expectProblemShape(await issue(couponId, z), 409, 'COUPON_SOLD_OUT')
    expect(await mysqlState(couponId)).toEqual({ issued: 2, holders: expect.arrayContaining([x, y]) })
    expect(await deps.redis.sismember(stateKeys(couponId).winners, String(z))).toBe(0)
    expect(await deps.redis.zcard(stateKeys(couponId).pending)).toBe(0)

    const mysql = countMysqlUse(deps.db)
    try {
      expectProblemShape(await issue(couponId, w), 409, 'COUPON_SOLD_OUT')
      expect(await remainingOf(couponId)).toBe(0)
      expect(mysql.count).toBe(0)
    } finally {
      mysql.stop()
    }
  })

  it('user already holds it in MySQL: 409 COUPON_ALREADY_ISSUED, and Redis knows the holder from then on', async () => {
    const couponId = await createCoupon({ totalQuantity: 5 })
    expect(await remainingOf(couponId)).toBe(5)
    const x = uniqueUserId()
    await holderBehindRedisBack(couponId, x)

    expectProblemShape(await issue(couponId, x), 409, 'COUPON_ALREADY_ISSUED')
    expect(await mysqlState(couponId)).toEqual({ issued: 1, holders: [x] })

    const mysql = countMysqlUse(deps.db)
    try {
      expectProblemShape(await issue(couponId, x), 409, 'COUPON_ALREADY_ISSUED')
      expect(await remainingOf(couponId)).toBe(4)
      expect(mysql.count).toBe(0)
    } finally {
      mysql.stop()
    }
    const others = Array.from({ length: 10 }, () => uniqueUserId())
    expect(tally(await Promise.all(others.map((u) => issue(couponId, u))))).toEqual({
      ISSUED: 4,
      COUPON_SOLD_OUT: 6,
    })
    expect((await mysqlState(couponId)).issued).toBe(5)
  })
})

describe('with Redis flushed or down (on a redis-server of this test)', () => {
  let own: OwnRedis
  let faultDeps: RuntimeDeps
  let faultApp: ReturnType<typeof createTestApp>

  beforeAll(async () => {
    own = await startOwnRedis()
    faultDeps = await createTestDeps({ REDIS_URL: own.url })
    faultApp = createTestApp(faultDeps, [
      createAdminCouponCreateApp,
      createCouponGetApp,
      createCouponIssueApp,
    ])
  })
  afterAll(async () => {
    await own.start() // so that the clients close cleanly
    await faultDeps.close()
    await own.stop()
  })

  const faultCoupon = async (totalQuantity: number) => {
    const res = await call(faultApp, 'POST', '/v1/admin/coupons', {
      token: admin,
      body: { name: 'fault test', type: 'FIXED', value: 500, totalQuantity, validDays: 1 },
    })
    expect(res.status).toBe(201)
    return (res.body as { id: number }).id
  }

  /**
   * Issues to `users` concurrently. With `midway`, the first half is sent, `midway` runs as soon as the
   * first of them is answered (the others still in flight), and then the second half is sent: so some
   * claims come before it, some after, and persists of the earlier ones are under way while it runs.
   */
  const wave = async (couponId: number, users: number[], midway?: () => Promise<void>) => {
    const tokens = await Promise.all(users.map((u) => tokenFor(faultDeps, u)))
    const send = (token: string) => call(faultApp, 'POST', `/v1/coupons/${couponId}/issue`, { token })
    const half = midway ? Math.ceil(tokens.length / 2) : tokens.length
    const firstHalf = tokens.slice(0, half).map(send)
    if (midway) {
      await Promise.race(firstHalf)
      await midway()
    }
    const responses = await Promise.all([...firstHalf, ...tokens.slice(half).map(send)])
    return users.map((userId, i) => ({ userId, res: responses[i] as TestResponse }))
  }

  const rebuilds = async () =>
    ((await faultDeps.metrics.registry.getSingleMetric('coupon_state_rebuilds_total')?.get())?.values ?? [])
      .filter((v) => v.labels.outcome === 'rebuilt')
      .reduce((sum, v) => sum + v.value, 0)

  it('a FLUSHALL in the middle of a campaign never issues more than the total, nor twice to one user', async () => {
    const total = 50
    const couponId = await faultCoupon(total)
    const fresh = (n: number) => Array.from({ length: n }, () => uniqueUserId())
    const rebuildsBefore = await rebuilds()
    const first = fresh(30)
    // Flushed while requests are in flight, between two waves, and in flight again.
    const flush = () => own.flushAll()
    const waveA = await wave(couponId, first, flush)
    const waveB = await wave(couponId, [...fresh(40), ...first], flush)
    await own.flushAll()
    const waveC = await wave(couponId, fresh(60))
    const results = [...waveA, ...waveB, ...waveC]
    expect(await rebuilds()).toBeGreaterThanOrEqual(rebuildsBefore + 4)

    const allowed = new Set(['ISSUED', 'COUPON_SOLD_OUT', 'COUPON_ALREADY_ISSUED', 'SERVICE_UNAVAILABLE'])
    for (const { res } of results) expect(allowed).toContain(codeOf(res))
    // Wave A's users asked again in wave B: never a second coupon.
    const firstWinners = new Set(waveA.filter((r) => r.res.status === 201).map((r) => r.userId))
    for (const { userId, res } of waveB) if (firstWinners.has(userId)) expect(res.status).not.toBe(201)

    const issuedTo = results.filter((r) => r.res.status === 201).map((r) => r.userId)
    expect(new Set(issuedTo).size).toBe(issuedTo.length)
    const state = await mysqlState(couponId)
    expect(state.holders.sort()).toEqual([...issuedTo].sort())
    expect(state.issued).toBe(state.holders.length)
    // 130 distinct callers for 50 coupons: every coupon is issued in the end, so no slot leaked either.
    expect(state.issued).toBe(total)
    expect((await call(faultApp, 'GET', `/v1/coupons/${couponId}`)).body).toMatchObject({
      remainingQuantity: 0,
    })
  })

  it('Redis down: refusals settled for good are still answered 409; the others get 503', async () => {
    const couponId = await faultCoupon(3)
    const [a, b, inFlight, late] = [uniqueUserId(), uniqueUserId(), uniqueUserId(), uniqueUserId()]
    for (const { res } of await wave(couponId, [a, b])) expect(res.status).toBe(201)
    // The last slot claimed by a request still in flight elsewhere: full, but not for good.
    expect((await claimSlot(faultDeps, couponId, inFlight, new Date())).outcome).toBe('CLAIMED')
    for (const { res } of await wave(couponId, [late])) expectProblemShape(res, 409, 'COUPON_SOLD_OUT')

    await own.stop()
    try {
      const during = await wave(couponId, [a, late, uniqueUserId()])
      expect(during.map(({ res }) => codeOf(res))).toEqual([
        'COUPON_ALREADY_ISSUED',
        'SERVICE_UNAVAILABLE',
        'SERVICE_UNAVAILABLE',
      ])
    } finally {
      await own.start() // empty: the state is rebuilt from MySQL, without the claim in flight
      await waitForRedis(faultDeps.redis)
    }
    expect((await mysqlState(couponId)).issued).toBe(2)
  })

  it('a coupon full with nothing pending is answered from its holder list, even for users this process never saw', async () => {
    // The winners are issued by another process (its own deps, so its own memory).
    const other = await createTestDeps({ REDIS_URL: own.url })
    try {
      const otherApp = createTestApp(other, [createCouponIssueApp])
      const couponId = await faultCoupon(3)
      const winners = [uniqueUserId(), uniqueUserId(), uniqueUserId()]
      for (const u of winners) {
        const res = await call(otherApp, 'POST', `/v1/coupons/${couponId}/issue`, {
          token: await tokenFor(other, u),
        })
        expect(res.status).toBe(201)
      }
      // This process learns the coupon is complete from one refusal, and fetches its holders.
      for (const { res } of await wave(couponId, [uniqueUserId()])) {
        expectProblemShape(res, 409, 'COUPON_SOLD_OUT')
      }
      await own.stop()
      try {
        const during = await wave(couponId, [...winners, uniqueUserId(), uniqueUserId()])
        expect(during.map(({ res }) => codeOf(res))).toEqual([
          'COUPON_ALREADY_ISSUED',
          'COUPON_ALREADY_ISSUED',
          'COUPON_ALREADY_ISSUED',
          'COUPON_SOLD_OUT',
          'COUPON_SOLD_OUT',
        ])
      } finally {
        await own.start()
        await waitForRedis(faultDeps.redis)
      }
      expect((await mysqlState(couponId)).issued).toBe(3)
    } finally {
      await other.close()
    }
  })

  it('Redis down: 503 SERVICE_UNAVAILABLE with Retry-After and nothing issued; issuing resumes after', async () => {
    const couponId = await faultCoupon(10)
    const early = Array.from({ length: 3 }, () => uniqueUserId())
    for (const { res } of await wave(couponId, early)) expect(res.status).toBe(201)

    await own.stop()
    const during = await wave(
      couponId,
      Array.from({ length: 5 }, () => uniqueUserId()),
    )
    for (const { res } of during) {
      expectProblemShape(res, 503, 'SERVICE_UNAVAILABLE')
      expect(res.headers.get('Retry-After')).toBe('1')
    }
    expect((await mysqlState(couponId)).issued).toBe(3)
    // Reads fall back to MySQL.
    const get = await call(faultApp, 'GET', `/v1/coupons/${couponId}`)
    expect(get.status).toBe(200)
    expect(get.body).toMatchObject({ remainingQuantity: 7 })

    await own.start() // empty: the state is rebuilt from MySQL
    await waitForRedis(faultDeps.redis)
    const later = await wave(couponId, [...early, ...Array.from({ length: 20 }, () => uniqueUserId())])
    expect(tally(later.map((r) => r.res))).toEqual({
      ISSUED: 7,
      COUPON_ALREADY_ISSUED: 3,
      COUPON_SOLD_OUT: 13,
    })
    for (const { userId, res } of later.slice(0, 3)) {
      expect({ userId, code: codeOf(res) }).toEqual({ userId, code: 'COUPON_ALREADY_ISSUED' })
    }
    const state = await mysqlState(couponId)
    expect(state.issued).toBe(10)
    expect(state.holders).toHaveLength(10)
  })
})
