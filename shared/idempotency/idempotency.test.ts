import { and, eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { charge, ensureAccount, getBalance } from '../balance/balance'
import { idempotencyKeys } from '../db/schema'
import { inTransaction } from '../db/transaction'
import type { RuntimeDeps } from '../runtime/deps'
import { createTestDeps, uniqueUserId } from '../testing/harness'
import { startOwnRedis } from '../testing/own-redis'
import {
  IDEMPOTENCY_TTL_MS,
  purgeExpiredIdempotencyKeys,
  type RecordEffect,
  runIdempotent,
} from './idempotency'

let deps: RuntimeDeps

beforeAll(async () => {
  deps = await createTestDeps()
})
afterAll(async () => {
  await deps.close()
})

const HOUR_MS = 3600 * 1000

async function insertKey(userId: number, key: string, createdAt: Date) {
  await deps.db.insert(idempotencyKeys).values({
    userId,
    key,
    method: 'POST',
    path: '/v1/test',
    requestHash: '0'.repeat(64),
    responseStatus: 200,
    responseBody: '{"stored":true}',
    createdAt,
  })
}

const keysOf = async (userId: number) =>
  (await deps.db.select().from(idempotencyKeys).where(eq(idempotencyKeys.userId, userId)))
    .map((r) => r.key)
    .sort()

const chargeRequest = (userId: number, key: string, amount: number) => ({
  userId,
  key,
  method: 'POST',
  path: `/v1/users/${userId}/balance/charge`,
  body: { amount },
  status: 200,
})

/** A charge as the balance-charge handler makes it: the key recorded in the charge's transaction. */
const chargeWith = (db: RuntimeDeps['db'], userId: number, amount: number) => (record: RecordEffect) =>
  inTransaction(db, async (tx) => {
    const balance = await charge(tx, userId, amount)
    await record.insert(tx, balance)
    return balance
  })

describe('purgeExpiredIdempotencyKeys', () => {
  it('deletes only keys older than 24 hours', async () => {
    const userId = uniqueUserId()
    const now = new Date()
    await insertKey(userId, 'fresh', new Date(now.getTime() - HOUR_MS))
    await insertKey(userId, 'almost', new Date(now.getTime() - IDEMPOTENCY_TTL_MS + 60_000))
    await insertKey(userId, 'expired', new Date(now.getTime() - IDEMPOTENCY_TTL_MS - 60_000))
    await insertKey(userId, 'ancient', new Date(now.getTime() - 30 * 24 * HOUR_MS))
    const purged = await purgeExpiredIdempotencyKeys(deps.db, now)
    expect(purged).toBeGreaterThanOrEqual(2)
    expect(await keysOf(userId)).toEqual(['almost', 'fresh'])
  })

  it('works through many expired keys in batches', async () => {
    const userId = uniqueUserId()
    const old = new Date(Date.now() - IDEMPOTENCY_TTL_MS - HOUR_MS)
    for (let i = 0; i < 25; i++) await insertKey(userId, `old-${i}`, old)
    await insertKey(userId, 'kept', new Date())
    expect(await purgeExpiredIdempotencyKeys(deps.db, new Date(), 10)).toBeGreaterThanOrEqual(25)
    expect(await keysOf(userId)).toEqual(['kept'])
  })
})

describe('runIdempotent', () => {
  it('runs again under a key whose first use is older than 24 hours (not a replay)', async () => {
    const userId = uniqueUserId()
    await ensureAccount(deps.db, userId)
    const request = chargeRequest(userId, 'old-key', 1_000)
    await deps.db.insert(idempotencyKeys).values({
      userId,
      key: 'old-key',
      method: 'POST',
      path: request.path,
      requestHash: '0'.repeat(64),
      responseStatus: 200,
      responseBody: '{"old":true}',
      createdAt: new Date(Date.now() - IDEMPOTENCY_TTL_MS - 60_000),
    })
    const result = await runIdempotent(deps, request, chargeWith(deps.db, userId, 1_000))
    expect(result.replayed).toBe(false)
    expect((await getBalance(deps.db, userId)).balance).toBe(1_000)
    const [row] = await deps.db
      .select()
      .from(idempotencyKeys)
      .where(and(eq(idempotencyKeys.userId, userId), eq(idempotencyKeys.key, 'old-key')))
    expect(JSON.parse(row?.responseBody ?? '{}')).toEqual(result.body)
  })

  it('with Redis down, MySQL alone still lets one key have one effect', async () => {
    const own = await startOwnRedis()
    const faultDeps = await createTestDeps({ REDIS_URL: own.url })
    try {
      await own.stop()
      const userId = uniqueUserId()
      await ensureAccount(faultDeps.db, userId)
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, () =>
          runIdempotent(
            faultDeps,
            chargeRequest(userId, 'no-redis', 2_000),
            chargeWith(faultDeps.db, userId, 2_000),
          ),
        ),
      )
      const fulfilled = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
      expect(fulfilled.filter((r) => !r.replayed)).toHaveLength(1)
      for (const r of results)
        if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'SERVICE_UNAVAILABLE' })
      expect((await getBalance(deps.db, userId)).balance).toBe(2_000)
    } finally {
      await own.start()
      await faultDeps.close()
      await own.stop()
    }
  })
})
