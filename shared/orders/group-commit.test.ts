import { eq, inArray } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import createOrderCreateApp from '../../functions/order-create/handler'
import { poolOf } from '../db/client'
import { orders, outbox, products } from '../db/schema'
import { AppError } from '../errors'
import { noKey } from '../idempotency/idempotency'
import { checkInvariants } from '../invariants/check'
import {
  call,
  fundUser,
  giveCoupon,
  insertProduct,
  tokenFor,
  uniqueUserId,
  useTestApp,
} from '../testing/harness'
import { type PlacementOutcome, placeBatch, StockRefused } from './placement'

const t = useTestApp([createOrderCreateApp])

const stockOf = async (id: number) =>
  (await t.deps.db.select({ stock: products.stock }).from(products).where(eq(products.id, id)))[0]?.stock

const buyers = async (n: number, balance: number) => {
  const ids = Array.from({ length: n }, () => uniqueUserId())
  for (const id of ids) await fundUser(t.deps, id, balance)
  return ids
}

const codes = (outcomes: PlacementOutcome[]) =>
  outcomes.map((o) => ('order' in o ? 'PLACED' : o.error instanceof AppError ? o.error.code : o.error.name))

describe('group commit: orders placed together in one transaction', () => {
  it('when the batch asks for one unit more than the stock, exactly the orders that fit win, in arrival order', async () => {
    const productId = await insertProduct(t.deps, { stock: 10, price: 100 })
    const users = await buyers(4, 10_000)
    // 4 + 4 + 3 = 11: the third does not fit in the 2 left; the fourth (1 unit) still does.
    const quantities = [4, 4, 3, 1]
    const outcomes = await placeBatch(
      poolOf(t.deps.db),
      users.map((userId, i) => ({
        userId,
        input: { items: [{ productId, quantity: quantities[i] as number }] },
        record: noKey,
      })),
    )
    expect(codes(outcomes)).toEqual(['PLACED', 'PLACED', 'INSUFFICIENT_STOCK', 'PLACED'])
    const refused = outcomes[2] as { error: StockRefused }
    expect(refused.error).toBeInstanceOf(StockRefused)
    expect(refused.error.left).toBe(2)
    expect(await stockOf(productId)).toBe(1)
    const placed = outcomes.flatMap((o) => ('order' in o ? [o.order.id] : []))
    expect(new Set(placed).size).toBe(3)
    // Each winner has its own order, lines, ledger entry and event.
    const events = await t.deps.db.select().from(outbox).where(inArray(outbox.aggregateId, placed))
    expect(events.map((e) => e.aggregateId).sort()).toEqual([...placed].sort())
    expect(await checkInvariants(t.deps.db, { productIds: [productId], userIds: users })).toEqual([])
  })

  it("one order's refusal (balance, coupon, unknown product) never fails another's", async () => {
    const productId = await insertProduct(t.deps, { stock: 100, price: 1_000 })
    const [rich, poor, couponless, lost, other] = await buyers(5, 5_000)
    await fundUser(t.deps, poor as number, 0)
    const { userCouponId } = await giveCoupon(t.deps, other as number, { type: 'FIXED', value: 500 })
    const item = (quantity: number) => ({ items: [{ productId, quantity }] })
    const outcomes = await placeBatch(poolOf(t.deps.db), [
      { userId: rich as number, input: item(2), record: noKey },
      { userId: poor as number, input: item(6), record: noKey },
      { userId: couponless as number, input: { ...item(1), userCouponId }, record: noKey },
      {
        userId: lost as number,
        input: { items: [{ productId: Number.MAX_SAFE_INTEGER, quantity: 1 }] },
        record: noKey,
      },
      { userId: other as number, input: { ...item(1), userCouponId }, record: noKey },
      // The same coupon twice in one batch: the second use is refused, as it would be one order later.
      { userId: other as number, input: { ...item(1), userCouponId }, record: noKey },
    ])
    expect(codes(outcomes)).toEqual([
      'PLACED',
      'INSUFFICIENT_BALANCE',
      'COUPON_NOT_USABLE',
      'PRODUCT_NOT_FOUND',
      'PLACED',
      'COUPON_NOT_USABLE',
    ])
    expect(await stockOf(productId)).toBe(97)
    const users = [rich, poor, couponless, lost, other] as number[]
    expect(await checkInvariants(t.deps.db, { productIds: [productId], userIds: users })).toEqual([])
  })

  it('batches concurrent requests through HTTP, and sells exactly the stock', async () => {
    const productId = await insertProduct(t.deps, { stock: 50, price: 100 })
    const users = await buyers(80, 1_000)
    const batchesBefore = (await t.deps.metrics.orderBatchSize.get()).values.find((v) =>
      v.metricName?.endsWith('_count'),
    )?.value
    const sumBefore = (await t.deps.metrics.orderBatchSize.get()).values.find((v) =>
      v.metricName?.endsWith('_sum'),
    )?.value
    const responses = await Promise.all(
      users.map(async (userId) =>
        call(t.app, 'POST', '/v1/orders', {
          token: await tokenFor(t.deps, userId),
          body: { items: [{ productId, quantity: 1 }] },
        }),
      ),
    )
    const statuses = responses.map((r) => r.status)
    expect(statuses.filter((s) => s === 201)).toHaveLength(50)
    expect(statuses.filter((s) => s === 409)).toHaveLength(30)
    expect(await stockOf(productId)).toBe(0)
    const after = (await t.deps.metrics.orderBatchSize.get()).values
    const batches = (after.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0) - (batchesBefore ?? 0)
    const ordersBatched = (after.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0) - (sumBefore ?? 0)
    // Fewer transactions than orders: the group commit engaged.
    expect(batches).toBeLessThan(ordersBatched)
    const placed = await t.deps.db.select({ id: orders.id }).from(orders).where(inArray(orders.userId, users))
    expect(placed).toHaveLength(50)
    expect(await checkInvariants(t.deps.db, { productIds: [productId], userIds: users })).toEqual([])
  })
})
