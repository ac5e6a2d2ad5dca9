import { eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import createAdminCouponCreateApp from '../../functions/admin-coupon-create/handler'
import createBalanceChargeApp from '../../functions/balance-charge/handler'
import createCouponIssueApp from '../../functions/coupon-issue/handler'
import createOrderCancelApp from '../../functions/order-cancel/handler'
import createOrderCreateApp from '../../functions/order-create/handler'
import { balanceLedger, balances, products } from '../db/schema'
import {
  call,
  expectProblemShape,
  fundUser,
  insertProduct,
  type TestResponse,
  tokenFor,
  uniqueUserId,
  useTestApp,
} from '../testing/harness'

/**
 * A replay answers the first response, whatever changed since (docs/api.md, Idempotency): one test per
 * keyed route, each changing the world between the first request and its retry.
 */
const t = useTestApp([
  createOrderCreateApp,
  createOrderCancelApp,
  createBalanceChargeApp,
  createCouponIssueApp,
  createAdminCouponCreateApp,
])

const user = async (balance = 0) => {
  const userId = uniqueUserId()
  await fundUser(t.deps, userId, balance)
  return { userId, token: await tokenFor(t.deps, userId) }
}

const post = (path: string, token: string, key: string | undefined, body?: unknown) =>
  call(t.app, 'POST', path, { token, body, headers: key ? { 'Idempotency-Key': key } : {} })

const expectReplayOf = (replay: TestResponse, first: TestResponse) => {
  expect(replay.status).toBe(first.status)
  expect(replay.headers.get('Idempotent-Replayed')).toBe('true')
  expect(replay.body).toEqual(first.body)
}

const ledgerEntries = async (userId: number) =>
  (await t.deps.db.select().from(balanceLedger).where(eq(balanceLedger.userId, userId))).length

describe('a replay returns the first answer after the world changed', () => {
  it('POST /v1/orders: the product sold out since, and the stock gate knows it', async () => {
    const productId = await insertProduct(t.deps, { stock: 2, price: 1_000 })
    const buyer = await user(10_000)
    const other = await user(10_000)
    const body = { items: [{ productId, quantity: 1 }] }
    const first = await post('/v1/orders', buyer.token, 'order-then-sold-out', body)
    expect(first.status).toBe(201)

    // Sold out: the last unit goes, then a refused order makes the stock gate remember it.
    expect((await post('/v1/orders', other.token, undefined, body)).status).toBe(201)
    expectProblemShape(await post('/v1/orders', other.token, undefined, body), 409, 'INSUFFICIENT_STOCK')
    expectProblemShape(await post('/v1/orders', other.token, undefined, body), 409, 'INSUFFICIENT_STOCK')

    const replay = await post('/v1/orders', buyer.token, 'order-then-sold-out', body)
    expectReplayOf(replay, first)
    const [row] = await t.deps.db.select().from(products).where(eq(products.id, productId))
    expect(row?.stock).toBe(0)
    expect(await ledgerEntries(buyer.userId)).toBe(2)
  })

  it('POST /v1/users/{id}/balance/charge: the balance was spent since', async () => {
    const productId = await insertProduct(t.deps, { stock: 5, price: 3_000 })
    const payer = await user()
    const path = `/v1/users/${payer.userId}/balance/charge`
    const first = await post(path, payer.token, 'charge-then-spend', { amount: 3_000 })
    expect(first.status).toBe(200)
    expect(first.body).toMatchObject({ balance: 3_000 })

    expect(
      (await post('/v1/orders', payer.token, undefined, { items: [{ productId, quantity: 1 }] })).status,
    ).toBe(201)

    const replay = await post(path, payer.token, 'charge-then-spend', { amount: 3_000 })
    expectReplayOf(replay, first)
    const [row] = await t.deps.db.select().from(balances).where(eq(balances.userId, payer.userId))
    expect(row?.balance).toBe(0)
    expect(await ledgerEntries(payer.userId)).toBe(2)
  })

  it('POST /v1/coupons/{id}/issue: the coupon was exhausted since', async () => {
    const admin = await tokenFor(t.deps, uniqueUserId(), 'admin')
    const created = await call(t.app, 'POST', '/v1/admin/coupons', {
      token: admin,
      body: { name: 'replayed', type: 'FIXED', value: 500, totalQuantity: 2, validDays: 7 },
    })
    expect(created.status).toBe(201)
    const path = `/v1/coupons/${(created.body as { id: number }).id}/issue`
    const holder = await user()
    const first = await post(path, holder.token, 'issue-then-exhausted')
    expect(first.status).toBe(201)

    expect((await post(path, (await user()).token, undefined)).status).toBe(201)
    expectProblemShape(await post(path, (await user()).token, undefined), 409, 'COUPON_SOLD_OUT')

    expectReplayOf(await post(path, holder.token, 'issue-then-exhausted'), first)
  })

  it('POST /v1/orders/{id}/cancel: the order is cancelled (by that very request)', async () => {
    const productId = await insertProduct(t.deps, { stock: 5, price: 2_000 })
    const buyer = await user(2_000)
    const placed = await post('/v1/orders', buyer.token, undefined, { items: [{ productId, quantity: 1 }] })
    const path = `/v1/orders/${(placed.body as { id: number }).id}/cancel`
    const first = await post(path, buyer.token, 'cancel-once')
    expect(first.status).toBe(200)
    expectProblemShape(await post(path, buyer.token, undefined), 409, 'ORDER_NOT_CANCELLABLE')

    expectReplayOf(await post(path, buyer.token, 'cancel-once'), first)
    // One refund only: CHARGE, PAYMENT, REFUND.
    expect(await ledgerEntries(buyer.userId)).toBe(3)
  })
})
