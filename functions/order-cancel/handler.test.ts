import { and, eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { balanceLedger, outbox, products, userCoupons } from '../../shared/db/schema'
import { checkInvariants } from '../../shared/invariants/check'
import {
  call,
  expectProblemShape,
  fundUser,
  giveCoupon,
  insertProduct,
  tokenFor,
  uniqueUserId,
  useTestApp,
} from '../../shared/testing/harness'
import createOrderCreateApp from '../order-create/handler'
import createOrderGetApp from '../order-get/handler'
import createUserOrdersListApp from '../user-orders-list/handler'
import createOrderCancelApp from './handler'

const t = useTestApp([createOrderCreateApp, createOrderGetApp, createOrderCancelApp, createUserOrdersListApp])

/** A user with one paid order of 2 units at 1,000 won, bought with a 300-won coupon. */
async function paidOrder() {
  const userId = uniqueUserId()
  await fundUser(t.deps, userId, 10_000)
  const token = await tokenFor(t.deps, userId)
  const productId = await insertProduct(t.deps, { price: 1_000, stock: 10 })
  const { userCouponId } = await giveCoupon(t.deps, userId, { type: 'FIXED', value: 300 })
  const res = await call(t.app, 'POST', '/v1/orders', {
    token,
    body: { items: [{ productId, quantity: 2 }], userCouponId },
  })
  expect(res.status).toBe(201)
  return { userId, token, productId, userCouponId, orderId: (res.body as { id: number }).id }
}

const stockOf = async (id: number) =>
  (await t.deps.db.select({ stock: products.stock }).from(products).where(eq(products.id, id)))[0]?.stock

describe('POST /v1/orders/:orderId/cancel', () => {
  it('refunds, restocks, gives the coupon back and writes order.cancelled', async () => {
    const o = await paidOrder()
    expect(await stockOf(o.productId)).toBe(8)
    const res = await call(t.app, 'POST', `/v1/orders/${o.orderId}/cancel`, { token: o.token })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({
      id: o.orderId,
      status: 'CANCELLED',
      total: 1_700,
      userCouponId: o.userCouponId,
    })
    expect(typeof (res.body as { cancelledAt?: unknown }).cancelledAt).toBe('string')
    expect(await stockOf(o.productId)).toBe(10)
    const refunds = await t.deps.db
      .select()
      .from(balanceLedger)
      .where(and(eq(balanceLedger.orderId, o.orderId), eq(balanceLedger.type, 'REFUND')))
    expect(refunds).toMatchObject([{ amount: 1_700, balanceAfter: 10_000 }])
    const [coupon] = await t.deps.db.select().from(userCoupons).where(eq(userCoupons.id, o.userCouponId))
    expect(coupon).toMatchObject({ status: 'AVAILABLE', orderId: null })
    const events = await t.deps.db.select().from(outbox).where(eq(outbox.aggregateId, o.orderId))
    expect(events.map((e) => e.type).sort()).toEqual(['order.cancelled', 'order.completed'])
    const read = await call(t.app, 'GET', `/v1/orders/${o.orderId}`, { token: o.token })
    expect(read.body).toEqual(res.body)
    expect(await checkInvariants(t.deps.db, { productIds: [o.productId], userIds: [o.userId] })).toEqual([])
  })

  it('10 concurrent cancels of one order: one refund, nine ORDER_NOT_CANCELLABLE', async () => {
    const o = await paidOrder()
    const responses = await Promise.all(
      Array.from({ length: 10 }, () =>
        call(t.app, 'POST', `/v1/orders/${o.orderId}/cancel`, { token: o.token }),
      ),
    )
    expect(responses.filter((r) => r.status === 200)).toHaveLength(1)
    for (const r of responses.filter((x) => x.status !== 200))
      expectProblemShape(r, 409, 'ORDER_NOT_CANCELLABLE')
    expect(await stockOf(o.productId)).toBe(10)
    expect(await checkInvariants(t.deps.db, { productIds: [o.productId], userIds: [o.userId] })).toEqual([])
  })

  it('replays a cancel sent again with its Idempotency-Key', async () => {
    const o = await paidOrder()
    const headers = { 'Idempotency-Key': 'cancel-1' }
    const first = await call(t.app, 'POST', `/v1/orders/${o.orderId}/cancel`, { token: o.token, headers })
    const again = await call(t.app, 'POST', `/v1/orders/${o.orderId}/cancel`, { token: o.token, headers })
    expect(again.status).toBe(200)
    expect(again.headers.get('Idempotent-Replayed')).toBe('true')
    expect(again.body).toEqual(first.body)
  })

  it("hides another user's order behind 404 and lets an admin cancel it", async () => {
    const o = await paidOrder()
    const stranger = await tokenFor(t.deps, uniqueUserId())
    expectProblemShape(
      await call(t.app, 'POST', `/v1/orders/${o.orderId}/cancel`, { token: stranger }),
      404,
      'ORDER_NOT_FOUND',
    )
    expectProblemShape(
      await call(t.app, 'GET', `/v1/orders/${o.orderId}`, { token: stranger }),
      404,
      'ORDER_NOT_FOUND',
    )
    expect(await stockOf(o.productId)).toBe(8)
    const admin = await tokenFor(t.deps, uniqueUserId(), 'admin')
    expect((await call(t.app, 'POST', `/v1/orders/${o.orderId}/cancel`, { token: admin })).status).toBe(200)
    expect(await checkInvariants(t.deps.db, { productIds: [o.productId], userIds: [o.userId] })).toEqual([])
  })

  it('takes no body: an unknown field is 400 and changes nothing, an empty object is fine', async () => {
    const o = await paidOrder()
    const refused = await call(t.app, 'POST', `/v1/orders/${o.orderId}/cancel`, {
      token: o.token,
      body: { reason: 'x' },
    })
    const problem = expectProblemShape(refused, 400, 'VALIDATION_FAILED')
    expect(problem.errors).toEqual([{ path: 'reason', message: 'is not a known field' }])
    expect(await stockOf(o.productId)).toBe(8)
    const res = await call(t.app, 'POST', `/v1/orders/${o.orderId}/cancel`, { token: o.token, body: {} })
    expect(res.status).toBe(200)
  })

  it('answers 404 for an unknown order, 400 for a bad id, 401 without a token', async () => {
    const { token } = await paidOrder()
    expectProblemShape(
      await call(t.app, 'POST', `/v1/orders/${Number.MAX_SAFE_INTEGER}/cancel`, { token }),
      404,
      'ORDER_NOT_FOUND',
    )
    expectProblemShape(await call(t.app, 'POST', '/v1/orders/0/cancel', { token }), 400, 'VALIDATION_FAILED')
    expectProblemShape(await call(t.app, 'POST', '/v1/orders/1/cancel'), 401, 'UNAUTHENTICATED')
  })
})

describe('GET /v1/users/:userId/orders', () => {
  it("lists the user's orders newest first, page by page", async () => {
    const userId = uniqueUserId()
    await fundUser(t.deps, userId, 10_000)
    const token = await tokenFor(t.deps, userId)
    const productId = await insertProduct(t.deps, { price: 100, stock: 10 })
    const ids: number[] = []
    for (let i = 0; i < 3; i++) {
      const res = await call(t.app, 'POST', '/v1/orders', {
        token,
        body: { items: [{ productId, quantity: 1 }] },
      })
      ids.push((res.body as { id: number }).id)
    }
    const page1 = await call(t.app, 'GET', `/v1/users/${userId}/orders?limit=2`, { token })
    const body1 = page1.body as { items: Array<{ id: number }>; nextCursor: string }
    expect(body1.items.map((o) => o.id)).toEqual([ids[2], ids[1]])
    const page2 = await call(t.app, 'GET', `/v1/users/${userId}/orders?limit=2&cursor=${body1.nextCursor}`, {
      token,
    })
    expect(page2.body).toMatchObject({
      items: [{ id: ids[0], items: [{ productId, quantity: 1 }] }],
      nextCursor: null,
    })
  })

  it("refuses another user's list with 403 and bad paging with 400", async () => {
    const userId = uniqueUserId()
    const token = await tokenFor(t.deps, userId)
    expectProblemShape(
      await call(t.app, 'GET', `/v1/users/${uniqueUserId()}/orders`, { token }),
      403,
      'FORBIDDEN',
    )
    // The caller's own list: on another user's, the 403 comes before any 400 (docs/api.md).
    expectProblemShape(
      await call(t.app, 'GET', `/v1/users/${userId}/orders?limit=0`, { token }),
      400,
      'VALIDATION_FAILED',
    )
    expectProblemShape(
      await call(t.app, 'GET', `/v1/users/${userId}/orders?cursor=nope`, { token }),
      400,
      'VALIDATION_FAILED',
    )
  })
})
