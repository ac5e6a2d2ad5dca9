import { eq, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { charge, ensureAccount, MAX_BALANCE } from '../../shared/balance/balance'
import { balanceLedger, balances } from '../../shared/db/schema'
import { inTransaction } from '../../shared/db/transaction'
import {
  call,
  expectProblemShape,
  type TestResponse,
  tokenFor,
  uniqueUserId,
  useTestApp,
} from '../../shared/testing/harness'
import createBalanceChargeApp from './handler'

const t = useTestApp([createBalanceChargeApp])

const chargeReq = async (
  userId: number,
  body: unknown,
  options: { token?: string; key?: string; asUser?: number } = {},
) =>
  call(t.app, 'POST', `/v1/users/${userId}/balance/charge`, {
    token: options.token ?? (await tokenFor(t.deps, options.asUser ?? userId)),
    body,
    headers: options.key === undefined ? {} : { 'Idempotency-Key': options.key },
  })

/** The balance row and its ledger, checked against each other: the balance is always the sum of its entries. */
async function account(userId: number) {
  const [row] = await t.deps.db.select().from(balances).where(eq(balances.userId, userId))
  const [ledger] = await t.deps.db
    .select({ sum: sql<string | null>`SUM(${balanceLedger.amount})`, n: sql<number>`COUNT(*)` })
    .from(balanceLedger)
    .where(eq(balanceLedger.userId, userId))
  const sum = Number(ledger?.sum ?? 0)
  expect(sum).toBe(row?.balance ?? 0)
  return { balance: row?.balance ?? 0, entries: Number(ledger?.n ?? 0) }
}

describe('POST /v1/users/:userId/balance/charge', () => {
  it('charges and answers { userId, balance, updatedAt }', async () => {
    const userId = uniqueUserId()
    const res = await chargeReq(userId, { amount: 5_000 })
    expect(res.status).toBe(200)
    expect(Object.keys(res.body as object)).toEqual(['userId', 'balance', 'updatedAt'])
    expect(res.body).toMatchObject({ userId, balance: 5_000 })
    const updatedAt = (res.body as { updatedAt: string }).updatedAt
    expect(new Date(updatedAt).toISOString()).toBe(updatedAt)
    expect(await account(userId)).toEqual({ balance: 5_000, entries: 1 })
  })

  it('applies 50 concurrent charges of 1,000 to a fresh user: 50,000 and 50 ledger entries', async () => {
    const userId = uniqueUserId()
    const token = await tokenFor(t.deps, userId)
    const responses = await Promise.all(
      Array.from({ length: 50 }, () => chargeReq(userId, { amount: 1_000 }, { token })),
    )
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200))
    expect(await account(userId)).toEqual({ balance: 50_000, entries: 50 })
    const afters = await t.deps.db
      .select({ after: balanceLedger.balanceAfter })
      .from(balanceLedger)
      .where(eq(balanceLedger.userId, userId))
    expect(afters.map((a) => a.after).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 50 }, (_, i) => (i + 1) * 1_000),
    )
  })

  it('refuses a charge above 1,000,000,000 with 422 BALANCE_LIMIT_EXCEEDED and changes nothing', async () => {
    const userId = uniqueUserId()
    await ensureAccount(t.deps.db, userId)
    await inTransaction(t.deps.db, (tx) => charge(tx, userId, MAX_BALANCE - 1_000))
    const before = await account(userId)
    expectProblemShape(await chargeReq(userId, { amount: 1_001 }), 422, 'BALANCE_LIMIT_EXCEEDED')
    expect(await account(userId)).toEqual(before)
    const exact = await chargeReq(userId, { amount: 1_000 })
    expect(exact.body).toMatchObject({ balance: MAX_BALANCE })
    expectProblemShape(await chargeReq(userId, { amount: 1 }), 422, 'BALANCE_LIMIT_EXCEEDED')
    expect(await account(userId)).toEqual({ balance: MAX_BALANCE, entries: 2 })
  })

  it.each([
    ['amount', { amount: 0 }],
    ['amount', { amount: -1 }],
    ['amount', { amount: 10_000_001 }],
    ['amount', { amount: 1.5 }],
    ['amount', { amount: '1000' }],
    ['amount', { amount: null }],
    ['amount', {}],
    ['currency', { amount: 1_000, currency: 'KRW' }],
  ])('answers 400 VALIDATION_FAILED naming %s for %j, and changes nothing', async (path, body) => {
    const userId = uniqueUserId()
    const problem = expectProblemShape(await chargeReq(userId, body), 400, 'VALIDATION_FAILED')
    expect(problem.errors).toEqual([expect.objectContaining({ path })])
    expect(await account(userId)).toEqual({ balance: 0, entries: 0 })
  })

  it('answers 400 for a missing or malformed body, 415 for a non-JSON one, 400 for a bad user id', async () => {
    const userId = uniqueUserId()
    const token = await tokenFor(t.deps, userId)
    const raw = (rawBody: string, contentType = 'application/json') =>
      call(t.app, 'POST', `/v1/users/${userId}/balance/charge`, {
        token,
        rawBody,
        headers: { 'Content-Type': contentType },
      })
    expectProblemShape(
      await call(t.app, 'POST', `/v1/users/${userId}/balance/charge`, { token }),
      400,
      'VALIDATION_FAILED',
    )
    for (const body of ['', '{"amount":', '[1000]', 'null', '1000']) {
      expectProblemShape(await raw(body), 400, 'VALIDATION_FAILED')
    }
    expectProblemShape(
      await raw('amount=1000', 'application/x-www-form-urlencoded'),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    )
    const admin = await tokenFor(t.deps, uniqueUserId(), 'admin')
    for (const id of ['0', 'abc', '1e3', '12345678901234567890']) {
      const res = await call(t.app, 'POST', `/v1/users/${id}/balance/charge`, {
        token: admin,
        body: { amount: 1 },
      })
      expectProblemShape(res, 400, 'VALIDATION_FAILED')
    }
    expect(await account(userId)).toEqual({ balance: 0, entries: 0 })
  })

  it("refuses another user's balance (403) and no token (401); an admin may charge anyone", async () => {
    const userId = uniqueUserId()
    expectProblemShape(
      await chargeReq(userId, { amount: 1_000 }, { asUser: uniqueUserId() }),
      403,
      'FORBIDDEN',
    )
    expectProblemShape(
      await call(t.app, 'POST', `/v1/users/${userId}/balance/charge`, { body: { amount: 1_000 } }),
      401,
      'UNAUTHENTICATED',
    )
    expect(await account(userId)).toEqual({ balance: 0, entries: 0 })
    const admin = await tokenFor(t.deps, uniqueUserId(), 'admin')
    expect((await chargeReq(userId, { amount: 1_000 }, { token: admin })).status).toBe(200)
    expect(await account(userId)).toEqual({ balance: 1_000, entries: 1 })
  })
})

describe('Idempotency-Key on charge', () => {
  const isReplayOf = (res: TestResponse, first: TestResponse) =>
    res.status === 200 && res.headers.get('Idempotent-Replayed') === 'true' && res.text === first.text

  it('20 concurrent charges with one key charge once; the rest are replays or IDEMPOTENCY_KEY_IN_USE', async () => {
    const userId = uniqueUserId()
    const token = await tokenFor(t.deps, userId)
    const key = `charge-${uniqueUserId()}`
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => chargeReq(userId, { amount: 7_000 }, { token, key })),
    )
    const fresh = responses.filter((r) => r.status === 200 && r.headers.get('Idempotent-Replayed') === null)
    expect(fresh).toHaveLength(1)
    const first = fresh[0] as TestResponse
    for (const res of responses) {
      if (res === first) continue
      if (res.status === 409) expectProblemShape(res, 409, 'IDEMPOTENCY_KEY_IN_USE')
      else expect(isReplayOf(res, first)).toBe(true)
    }
    expect(await account(userId)).toEqual({ balance: 7_000, entries: 1 })

    const later = await chargeReq(userId, { amount: 7_000 }, { token, key })
    expect(isReplayOf(later, first)).toBe(true)
    expect(later.body).toEqual(first.body)
    expect(await account(userId)).toEqual({ balance: 7_000, entries: 1 })
  })

  it('answers 422 IDEMPOTENCY_KEY_REUSED for the same key with another body or path', async () => {
    const userId = uniqueUserId()
    const key = `charge-${uniqueUserId()}`
    expect((await chargeReq(userId, { amount: 1_000 }, { key })).status).toBe(200)
    expectProblemShape(await chargeReq(userId, { amount: 2_000 }, { key }), 422, 'IDEMPOTENCY_KEY_REUSED')
    // An admin's key is the admin's: the same key on another user's charge path is a reuse as well.
    const admin = await tokenFor(t.deps, uniqueUserId(), 'admin')
    const adminKey = `admin-${uniqueUserId()}`
    const other = uniqueUserId()
    expect((await chargeReq(userId, { amount: 1_000 }, { token: admin, key: adminKey })).status).toBe(200)
    expectProblemShape(
      await chargeReq(other, { amount: 1_000 }, { token: admin, key: adminKey }),
      422,
      'IDEMPOTENCY_KEY_REUSED',
    )
    expect(await account(userId)).toEqual({ balance: 2_000, entries: 2 })
    expect(await account(other)).toEqual({ balance: 0, entries: 0 })
  })

  it('treats the same JSON with its keys in another order as the same request', async () => {
    const userId = uniqueUserId()
    const key = `order-${uniqueUserId()}`
    const token = await tokenFor(t.deps, userId)
    const send = (rawBody: string) =>
      call(t.app, 'POST', `/v1/users/${userId}/balance/charge`, {
        token,
        rawBody,
        headers: { 'Content-Type': 'application/json', 'Idempotency-Key': key },
      })
    const first = await send('{"amount":3000}')
    const again = await send('{ "amount" : 3000 }')
    expect(isReplayOf(again, first)).toBe(true)
    expect(await account(userId)).toEqual({ balance: 3_000, entries: 1 })
  })

  it('answers 400 for a key over 255 characters or with a non-ASCII character; 255 is fine', async () => {
    const userId = uniqueUserId()
    for (const key of ['k'.repeat(256), 'caf\u00e9', 'tab\there']) {
      const problem = expectProblemShape(
        await chargeReq(userId, { amount: 1_000 }, { key }),
        400,
        'VALIDATION_FAILED',
      )
      expect(problem.errors).toEqual([expect.objectContaining({ path: 'headers.Idempotency-Key' })])
    }
    expect(await account(userId)).toEqual({ balance: 0, entries: 0 })
    expect((await chargeReq(userId, { amount: 1_000 }, { key: 'k'.repeat(255) })).status).toBe(200)
  })

  it('does not store a refusal: the same key succeeds once the refusal no longer applies', async () => {
    const userId = uniqueUserId()
    await ensureAccount(t.deps.db, userId)
    await inTransaction(t.deps.db, (tx) => charge(tx, userId, MAX_BALANCE))
    const key = `retry-${uniqueUserId()}`
    expectProblemShape(await chargeReq(userId, { amount: 500 }, { key }), 422, 'BALANCE_LIMIT_EXCEEDED')
    await t.deps.db
      .update(balances)
      .set({ balance: sql`${balances.balance} - 1000` })
      .where(eq(balances.userId, userId))
    await t.deps.db.insert(balanceLedger).values({
      userId,
      type: 'PAYMENT',
      amount: -1_000,
      balanceAfter: MAX_BALANCE - 1_000,
      orderId: null,
      createdAt: new Date(),
    })
    const res = await chargeReq(userId, { amount: 500 }, { key })
    expect(res.status).toBe(200)
    expect(res.headers.get('Idempotent-Replayed')).toBeNull()
    expect(await account(userId)).toEqual({ balance: MAX_BALANCE - 500, entries: 3 })
  })
})
