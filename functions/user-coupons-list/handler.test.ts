import { and, eq } from 'drizzle-orm'
import { beforeAll, describe, expect, it } from 'vitest'
import { userCoupons } from '../../shared/db/schema'
import {
  call,
  expectProblemShape,
  insertProduct,
  tokenFor,
  uniqueUserId,
  useTestApp,
} from '../../shared/testing/harness'
import createAdminCouponCreateApp from '../admin-coupon-create/handler'
import createBalanceChargeApp from '../balance-charge/handler'
import createCouponIssueApp from '../coupon-issue/handler'
import createOrderCreateApp from '../order-create/handler'
import createUserCouponsListApp from './handler'

const t = useTestApp([
  createAdminCouponCreateApp,
  createCouponIssueApp,
  createUserCouponsListApp,
  createBalanceChargeApp,
  createOrderCreateApp,
])
let admin: string

beforeAll(async () => {
  admin = await tokenFor(t.deps, uniqueUserId(), 'admin')
})

type Item = { userCouponId: number; couponId: number; status: string; usedAt: string | null }

async function issueNew(userId: number, name: string) {
  const created = await call(t.app, 'POST', '/v1/admin/coupons', {
    token: admin,
    body: { name, type: 'FIXED', value: 1_000, totalQuantity: 5, validDays: 10 },
  })
  const couponId = (created.body as { id: number }).id
  const issued = await call(t.app, 'POST', `/v1/coupons/${couponId}/issue`, {
    token: await tokenFor(t.deps, userId),
  })
  expect(issued.status).toBe(201)
  return { couponId, userCouponId: (issued.body as { userCouponId: number }).userCouponId }
}

const list = async (userId: number, query = '', token?: string) =>
  call(t.app, 'GET', `/v1/users/${userId}/coupons${query}`, {
    token: token ?? (await tokenFor(t.deps, userId)),
  })

describe('GET /v1/users/:userId/coupons', () => {
  it('lists every coupon newest first, deriving EXPIRED, and filters by status', async () => {
    const userId = uniqueUserId()
    const available = await issueNew(userId, 'available')
    const used = await issueNew(userId, 'used')
    const expired = await issueNew(userId, 'expired')
    // Used by a real order, so that the data stays true to the invariants other tests check.
    const productId = await insertProduct(t.deps, { price: 5_000, stock: 5 })
    const token = await tokenFor(t.deps, userId)
    const charged = await call(t.app, 'POST', `/v1/users/${userId}/balance/charge`, {
      token,
      body: { amount: 10_000 },
    })
    expect(charged.status).toBe(200)
    const order = await call(t.app, 'POST', '/v1/orders', {
      token,
      body: { items: [{ productId, quantity: 1 }], userCouponId: used.userCouponId },
    })
    expect(order.status).toBe(201)
    const orderId = (order.body as { id: number }).id
    await t.deps.db
      .update(userCoupons)
      .set({ expiresAt: new Date(Date.now() - 1_000) })
      .where(and(eq(userCoupons.id, expired.userCouponId), eq(userCoupons.userId, userId)))

    const all = await list(userId)
    expect(all.status).toBe(200)
    const items = (all.body as { items: Item[] }).items
    expect(items.map((i) => [i.userCouponId, i.status])).toEqual([
      [expired.userCouponId, 'EXPIRED'],
      [used.userCouponId, 'USED'],
      [available.userCouponId, 'AVAILABLE'],
    ])
    expect(items[1]).toMatchObject({ orderId, usedAt: (order.body as { paidAt: string }).paidAt })
    expect(items[2]).toMatchObject({ name: 'available', type: 'FIXED', value: 1_000, minOrderAmount: 0 })

    for (const [status, expected] of [
      ['AVAILABLE', available],
      ['USED', used],
      ['EXPIRED', expired],
    ] as const) {
      const res = await list(userId, `?status=${status}`)
      expect((res.body as { items: Item[] }).items.map((i) => i.userCouponId)).toEqual([
        expected.userCouponId,
      ])
    }
  })

  it('answers an empty list for a user without coupons', async () => {
    const res = await list(uniqueUserId())
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ items: [] })
  })

  it("refuses another user's coupons (403), lets an admin read them, and needs a token (401)", async () => {
    const owner = uniqueUserId()
    await issueNew(owner, 'private')
    expectProblemShape(await list(owner, '', await tokenFor(t.deps, uniqueUserId())), 403, 'FORBIDDEN')
    const byAdmin = await list(owner, '', admin)
    expect(byAdmin.status).toBe(200)
    expect((byAdmin.body as { items: Item[] }).items).toHaveLength(1)
    expectProblemShape(await call(t.app, 'GET', `/v1/users/${owner}/coupons`), 401, 'UNAUTHENTICATED')
  })

  it('answers 400 for a bad user id, an unknown status or an unknown query parameter', async () => {
    const token = await tokenFor(t.deps, uniqueUserId(), 'admin')
    for (const raw of ['0', 'abc', '1.5', '12345678901234567890']) {
      const res = await call(t.app, 'GET', `/v1/users/${raw}/coupons`, { token })
      expect(expectProblemShape(res, 400, 'VALIDATION_FAILED').errors).toEqual([
        expect.objectContaining({ path: 'userId' }),
      ])
    }
    const userId = uniqueUserId()
    for (const [query, path] of [
      ['?status=GONE', 'status'],
      ['?status=available', 'status'],
      ['?limit=5', 'limit'],
      ['?status=USED&status=AVAILABLE', 'status'],
    ]) {
      const problem = expectProblemShape(await list(userId, query), 400, 'VALIDATION_FAILED')
      expect(problem.errors).toEqual([expect.objectContaining({ path })])
    }
  })
})
