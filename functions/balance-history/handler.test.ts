import { describe, expect, it } from 'vitest'
import { ensureAccount, pay, refund } from '../../shared/balance/balance'
import { inTransaction } from '../../shared/db/transaction'
import { encodeCursor } from '../../shared/http/schemas'
import { call, expectProblemShape, tokenFor, uniqueUserId, useTestApp } from '../../shared/testing/harness'
import createBalanceChargeApp from '../balance-charge/handler'
import createBalanceHistoryApp from './handler'

const t = useTestApp([createBalanceHistoryApp, createBalanceChargeApp])

type Entry = {
  id: number
  type: string
  amount: number
  balanceAfter: number
  orderId: number | null
  createdAt: string
}
type Page = { items: Entry[]; nextCursor: string | null }

const history = async (userId: number, query = '', token?: string) =>
  call(t.app, 'GET', `/v1/users/${userId}/balance/history${query}`, {
    token: token ?? (await tokenFor(t.deps, userId)),
  })

async function chargeSeq(userId: number, amounts: number[]) {
  const token = await tokenFor(t.deps, userId)
  for (const amount of amounts) {
    const res = await call(t.app, 'POST', `/v1/users/${userId}/balance/charge`, { token, body: { amount } })
    expect(res.status).toBe(200)
  }
}

describe('GET /v1/users/:userId/balance/history', () => {
  it('lists entries newest first with signed amounts, and pages through them with the cursor', async () => {
    const userId = uniqueUserId()
    await chargeSeq(userId, [1_000, 2_000, 3_000])
    await ensureAccount(t.deps.db, userId)
    // An order id no real order has: the invariant checker matches payments to orders by id.
    const orderId = Number.MAX_SAFE_INTEGER - 20_000
    await inTransaction(t.deps.db, (tx) => pay(tx, userId, 2_500, orderId, new Date()))
    await inTransaction(t.deps.db, (tx) => refund(tx, userId, 2_500, orderId, new Date()))

    const all = await history(userId)
    expect(all.status).toBe(200)
    const page = all.body as Page
    expect(page.nextCursor).toBeNull()
    expect(page.items.map((e) => [e.type, e.amount, e.balanceAfter, e.orderId])).toEqual([
      ['REFUND', 2_500, 6_000, orderId],
      ['PAYMENT', -2_500, 3_500, orderId],
      ['CHARGE', 3_000, 6_000, null],
      ['CHARGE', 2_000, 3_000, null],
      ['CHARGE', 1_000, 1_000, null],
    ])
    expect(Object.keys(page.items[0] as object)).toEqual([
      'id',
      'type',
      'amount',
      'balanceAfter',
      'orderId',
      'createdAt',
    ])

    const seen: Entry[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const res = await history(userId, `?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      const body = res.body as Page
      expect(body.items.length).toBeLessThanOrEqual(2)
      seen.push(...body.items)
      cursor = body.nextCursor
      pages++
    } while (cursor !== null)
    expect(pages).toBe(3)
    expect(seen).toEqual(page.items)
  })

  it('is empty for a user without entries', async () => {
    expect((await history(uniqueUserId())).body).toEqual({ items: [], nextCursor: null })
  })

  it("refuses another user's history (403), lets an admin read it, and needs a token (401)", async () => {
    const userId = uniqueUserId()
    await chargeSeq(userId, [500])
    expectProblemShape(await history(userId, '', await tokenFor(t.deps, uniqueUserId())), 403, 'FORBIDDEN')
    const admin = await history(userId, '', await tokenFor(t.deps, uniqueUserId(), 'admin'))
    expect((admin.body as Page).items).toHaveLength(1)
    expectProblemShape(
      await call(t.app, 'GET', `/v1/users/${userId}/balance/history`),
      401,
      'UNAUTHENTICATED',
    )
  })

  it.each([
    ['limit', '?limit=0'],
    ['limit', '?limit=101'],
    ['limit', '?limit=abc'],
    ['limit', '?limit=1.5'],
    ['cursor', '?cursor=not-a-cursor'],
    ['cursor', `?cursor=${Buffer.from('id:0').toString('base64url')}`],
    ['size', '?size=10'],
  ])('answers 400 VALIDATION_FAILED naming %s for %s', async (path, query) => {
    const problem = expectProblemShape(await history(uniqueUserId(), query), 400, 'VALIDATION_FAILED')
    expect(problem.errors).toEqual([expect.objectContaining({ path })])
  })

  it('accepts a cursor it issued and a bad user id is 400', async () => {
    expect((await history(uniqueUserId(), `?cursor=${encodeCursor(5)}`)).status).toBe(200)
    const token = await tokenFor(t.deps, uniqueUserId(), 'admin')
    const res = await call(t.app, 'GET', '/v1/users/abc/balance/history', { token })
    expectProblemShape(res, 400, 'VALIDATION_FAILED')
  })
})
