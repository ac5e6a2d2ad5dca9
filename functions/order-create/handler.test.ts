import { eq, inArray, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { balanceLedger, balances, orders, outbox, products, userCoupons } from '../../shared/db/schema'
import { checkInvariants } from '../../shared/invariants/check'
import {
  call,
  expectProblemShape,
  fundUser,
  giveCoupon,
  insertProduct,
  type TestResponse,
  tokenFor,
  uniqueUserId,
  useTestApp,
} from '../../shared/testing/harness'
import createOrderCancelApp from '../order-cancel/handler'
import createOrderGetApp from '../order-get/handler'
import createOrderCreateApp from './handler'

const t = useTestApp([createOrderCreateApp, createOrderGetApp, createOrderCancelApp])

const tally = (responses: TestResponse[]) => {
  const counts: Record<string, number> = {}
  for (const r of responses) {
    const key = r.status < 300 ? String(r.status) : `${r.status} ${(r.body as { code?: string }).code}`
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

const stockOf = async (id: number) => {
  const [row] = await t.deps.db.select({ stock: products.stock }).from(products).where(eq(products.id, id))
  return row?.stock
}
const balanceOf = async (userId: number) => {
  const [row] = await t.deps.db
    .select({ balance: balances.balance })
    .from(balances)
    .where(eq(balances.userId, userId))
  return row?.balance
}
const orderCount = async (userIds: number[]) => {
  const [row] = await t.deps.db
    .select({ n: sql<number>`COUNT(*)` })
    .from(orders)
    .where(inArray(orders.userId, userIds))
  return Number(row?.n)
}

/** A buyer with a token and a funded balance. */
const buyer = async (balance: number) => {
  const userId = uniqueUserId()
  await fundUser(t.deps, userId, balance)
  return { userId, token: await tokenFor(t.deps, userId) }
}

const order = (token: string, body: unknown, headers: Record<string, string> = {}) =>
  call(t.app, 'POST', '/v1/orders', { token, body, headers })

describe('POST /v1/orders', () => {
  it('prices, pays and records an order in one step', async () => {
    const { userId, token } = await buyer(10_000)
    const a = await insertProduct(t.deps, { price: 1_000, stock: 5, name: 'A' })
    const b = await insertProduct(t.deps, { price: 2_500, stock: 5, name: 'B' })
    const { userCouponId } = await giveCoupon(t.deps, userId, {
      type: 'FIXED',
      value: 1_000,
      minOrderAmount: 4_000,
    })

    const res = await order(token, {
      items: [
        { productId: b, quantity: 1 },
        { productId: a, quantity: 2 },
      ],
      userCouponId,
    })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({
      userId,
      status: 'PAID',
      items: [
        { productId: a, name: 'A', unitPrice: 1_000, quantity: 2, lineTotal: 2_000 },
        { productId: b, name: 'B', unitPrice: 2_500, quantity: 1, lineTotal: 2_500 },
      ],
      subtotal: 4_500,
      discount: 1_000,
      total: 3_500,
      userCouponId,
    })
    const placed = res.body as { id: number; paidAt: string; createdAt: string }
    expect(placed).not.toHaveProperty('cancelledAt')
    expect(await stockOf(a)).toBe(3)
    expect(await stockOf(b)).toBe(4)
    expect(await balanceOf(userId)).toBe(6_500)
    const ledger = await t.deps.db.select().from(balanceLedger).where(eq(balanceLedger.orderId, placed.id))
    expect(ledger).toMatchObject([{ type: 'PAYMENT', amount: -3_500, balanceAfter: 6_500 }])
    const [coupon] = await t.deps.db.select().from(userCoupons).where(eq(userCoupons.id, userCouponId))
    expect(coupon).toMatchObject({ status: 'USED', orderId: placed.id })
    const events = await t.deps.db.select().from(outbox).where(eq(outbox.aggregateId, placed.id))
    expect(events).toHaveLength(1)
    expect(events[0]?.payload).toMatchObject({
      type: 'order.completed',
      schemaVersion: 1,
      data: { orderId: placed.id, userId, status: 'PAID', subtotal: 4_500, discount: 1_000, total: 3_500 },
    })
    // The owner reads it back at once (from the primary).
    const read = await call(t.app, 'GET', `/v1/orders/${placed.id}`, { token })
    expect(read.body).toEqual(res.body)
    expect(await checkInvariants(t.deps.db, { productIds: [a, b], userIds: [userId] })).toEqual([])
  })

  it('floors a PERCENT discount and caps a FIXED one at the subtotal', async () => {
    const { userId, token } = await buyer(10_000)
    const p = await insertProduct(t.deps, { price: 999, stock: 5 })
    const percent = await giveCoupon(t.deps, userId, { type: 'PERCENT', value: 15 })
    const res = await order(token, {
      items: [{ productId: p, quantity: 1 }],
      userCouponId: percent.userCouponId,
    })
    expect(res.body).toMatchObject({ subtotal: 999, discount: 149, total: 850 })
    const fixed = await giveCoupon(t.deps, userId, { type: 'FIXED', value: 5_000 })
    const free = await order(token, {
      items: [{ productId: p, quantity: 1 }],
      userCouponId: fixed.userCouponId,
    })
    expect(free.body).toMatchObject({ subtotal: 999, discount: 999, total: 0 })
    expect(await checkInvariants(t.deps.db, { productIds: [p], userIds: [userId] })).toEqual([])
  })

  it('takes a free order from a user who never charged, opening the account at 0', async () => {
    const userId = uniqueUserId()
    const token = await tokenFor(t.deps, userId)
    const p = await insertProduct(t.deps, { price: 700, stock: 5 })
    const { userCouponId } = await giveCoupon(t.deps, userId, { type: 'FIXED', value: 1_000 })
    const res = await order(token, { items: [{ productId: p, quantity: 1 }], userCouponId })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({ subtotal: 700, discount: 700, total: 0 })
    expect(await balanceOf(userId)).toBe(0)
    const stranger = await tokenFor(t.deps, uniqueUserId())
    expectProblemShape(
      await order(stranger, { items: [{ productId: p, quantity: 1 }] }),
      409,
      'INSUFFICIENT_BALANCE',
    )
    expect(await checkInvariants(t.deps.db, { productIds: [p], userIds: [userId] })).toEqual([])
  })

  it('needs a token', async () => {
    expectProblemShape(
      await call(t.app, 'POST', '/v1/orders', { body: { items: [] } }),
      401,
      'UNAUTHENTICATED',
    )
  })

  it.each([
    ['no items', { items: [] }],
    ['a quantity of 0', { items: [{ productId: 1, quantity: 0 }] }],
    ['a quantity of 101', { items: [{ productId: 1, quantity: 101 }] }],
    ['a fractional quantity', { items: [{ productId: 1, quantity: 1.5 }] }],
    ['a string quantity', { items: [{ productId: 1, quantity: '1' }] }],
    ['a productId of 0', { items: [{ productId: 0, quantity: 1 }] }],
    [
      'a repeated productId',
      {
        items: [
          { productId: 7, quantity: 1 },
          { productId: 7, quantity: 2 },
        ],
      },
    ],
    ['51 lines', { items: Array.from({ length: 51 }, (_, i) => ({ productId: i + 1, quantity: 1 })) }],
    ['an unknown field', { items: [{ productId: 1, quantity: 1 }], note: 'hi' }],
    ['an unknown line field', { items: [{ productId: 1, quantity: 1, price: 1 }] }],
    ['a userCouponId string', { items: [{ productId: 1, quantity: 1 }], userCouponId: '3' }],
    ['items not an array', { items: { productId: 1, quantity: 1 } }],
  ])('rejects %s with 400 and changes nothing', async (_label, body) => {
    const { userId, token } = await buyer(10_000)
    const res = await order(token, body)
    const problem = expectProblemShape(res, 400, 'VALIDATION_FAILED')
    expect(Array.isArray(problem.errors) && problem.errors.length > 0).toBe(true)
    expect(await orderCount([userId])).toBe(0)
    expect(await balanceOf(userId)).toBe(10_000)
  })

  it('rejects an invalid Idempotency-Key with 400', async () => {
    const { token } = await buyer(1_000)
    const p = await insertProduct(t.deps)
    const body = { items: [{ productId: p, quantity: 1 }] }
    expectProblemShape(
      await order(token, body, { 'Idempotency-Key': 'x'.repeat(256) }),
      400,
      'VALIDATION_FAILED',
    )
    expect(await stockOf(p)).toBe(10)
  })

  it('answers 404 for an unknown product and changes nothing', async () => {
    const { userId, token } = await buyer(10_000)
    const p = await insertProduct(t.deps)
    const res = await order(token, {
      items: [
        { productId: p, quantity: 1 },
        { productId: Number.MAX_SAFE_INTEGER, quantity: 1 },
      ],
    })
    expectProblemShape(res, 404, 'PRODUCT_NOT_FOUND')
    expect(await stockOf(p)).toBe(10)
    expect(await orderCount([userId])).toBe(0)
  })

  it('answers 409 INSUFFICIENT_BALANCE and changes nothing', async () => {
    const { userId, token } = await buyer(999)
    const p = await insertProduct(t.deps, { price: 1_000 })
    expectProblemShape(
      await order(token, { items: [{ productId: p, quantity: 1 }] }),
      409,
      'INSUFFICIENT_BALANCE',
    )
    expect(await stockOf(p)).toBe(10)
    expect(await balanceOf(userId)).toBe(999)
    expect(await orderCount([userId])).toBe(0)
  })

  it('counts placements by outcome for /metrics', async () => {
    const outcome = async (name: string) =>
      (await t.deps.metrics.registry.getSingleMetric('order_requests_total')?.get())?.values.find(
        (v) => v.labels.operation === 'place' && v.labels.outcome === name,
      )?.value ?? 0
    const before = { placed: await outcome('placed'), short: await outcome('insufficient_balance') }
    const { token } = await buyer(1_000)
    const p = await insertProduct(t.deps, { price: 600 })
    await order(token, { items: [{ productId: p, quantity: 1 }] })
    await order(token, { items: [{ productId: p, quantity: 1 }] })
    expect(await outcome('placed')).toBe(before.placed + 1)
    expect(await outcome('insufficient_balance')).toBe(before.short + 1)
  })

  it('answers 409 INSUFFICIENT_STOCK naming the product and changes nothing', async () => {
    const { userId, token } = await buyer(100_000)
    const plenty = await insertProduct(t.deps, { stock: 10 })
    const scarce = await insertProduct(t.deps, { stock: 1 })
    const res = await order(token, {
      items: [
        { productId: plenty, quantity: 2 },
        { productId: scarce, quantity: 2 },
      ],
    })
    const problem = expectProblemShape(res, 409, 'INSUFFICIENT_STOCK')
    expect(problem.detail).toContain(String(scarce))
    expect([await stockOf(plenty), await stockOf(scarce)]).toEqual([10, 1])
    expect(await balanceOf(userId)).toBe(100_000)
  })

  it('refuses coupons that are not usable with 409 COUPON_NOT_USABLE, never 404', async () => {
    const { userId, token } = await buyer(100_000)
    const other = uniqueUserId()
    const p = await insertProduct(t.deps, { price: 1_000 })
    const items = [{ productId: p, quantity: 1 }]
    const othersCoupon = await giveCoupon(t.deps, other, { type: 'FIXED', value: 100 })
    const expired = await giveCoupon(t.deps, userId, {
      type: 'FIXED',
      value: 100,
      expiresAt: new Date(Date.now() - 1_000),
    })
    const tooSmall = await giveCoupon(t.deps, userId, { type: 'FIXED', value: 100, minOrderAmount: 5_000 })
    for (const userCouponId of [
      othersCoupon.userCouponId,
      expired.userCouponId,
      tooSmall.userCouponId,
      Number.MAX_SAFE_INTEGER,
    ]) {
      expectProblemShape(await order(token, { items, userCouponId }), 409, 'COUPON_NOT_USABLE')
    }
    const used = await giveCoupon(t.deps, userId, { type: 'FIXED', value: 100 })
    expect((await order(token, { items, userCouponId: used.userCouponId })).status).toBe(201)
    expectProblemShape(
      await order(token, { items, userCouponId: used.userCouponId }),
      409,
      'COUPON_NOT_USABLE',
    )
    expect(await stockOf(p)).toBe(9)
    expect(await checkInvariants(t.deps.db, { productIds: [p], userIds: [userId, other] })).toEqual([])
  })
})

describe('orders under concurrency', () => {
  it('stock 10 and 100 concurrent buyers: exactly 10 orders, 90 INSUFFICIENT_STOCK', async () => {
    const p = await insertProduct(t.deps, { price: 1_000, stock: 10 })
    const buyers = await Promise.all(Array.from({ length: 100 }, () => buyer(5_000)))
    const responses = await Promise.all(
      buyers.map((b) => order(b.token, { items: [{ productId: p, quantity: 1 }] })),
    )
    expect(tally(responses)).toEqual({ '201': 10, '409 INSUFFICIENT_STOCK': 90 })
    expect(await stockOf(p)).toBe(0)
    const paid = responses.filter((r) => r.status === 201).map((r) => (r.body as { userId: number }).userId)
    for (const b of buyers) expect(await balanceOf(b.userId)).toBe(paid.includes(b.userId) ? 4_000 : 5_000)
    expect(
      await checkInvariants(t.deps.db, { productIds: [p], userIds: buyers.map((b) => b.userId) }),
    ).toEqual([])
  })

  it('40 buyers ordering two products in opposite line order: no deadlock reaches a client', async () => {
    const a = await insertProduct(t.deps, { price: 100, stock: 1_000 })
    const b = await insertProduct(t.deps, { price: 200, stock: 1_000 })
    const buyers = await Promise.all(Array.from({ length: 40 }, () => buyer(10_000)))
    const responses = await Promise.all(
      buyers.map((x, i) => {
        const lines = [
          { productId: a, quantity: 1 + (i % 3) },
          { productId: b, quantity: 1 },
        ]
        return order(x.token, { items: i % 2 === 0 ? lines : lines.reverse() })
      }),
    )
    expect(tally(responses)).toEqual({ '201': 40 })
    expect(
      await checkInvariants(t.deps.db, { productIds: [a, b], userIds: buyers.map((x) => x.userId) }),
    ).toEqual([])
  })

  it('balance 5,000 and 10 concurrent 1,000-won orders: exactly 5 succeed', async () => {
    const { userId, token } = await buyer(5_000)
    const p = await insertProduct(t.deps, { price: 1_000, stock: 100 })
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => order(token, { items: [{ productId: p, quantity: 1 }] })),
    )
    expect(tally(responses)).toEqual({ '201': 5, '409 INSUFFICIENT_BALANCE': 5 })
    expect(await balanceOf(userId)).toBe(0)
    expect(await stockOf(p)).toBe(95)
    expect(await checkInvariants(t.deps.db, { productIds: [p], userIds: [userId] })).toEqual([])
  })

  it('one user coupon in 5 concurrent orders is used once', async () => {
    const { userId, token } = await buyer(100_000)
    const p = await insertProduct(t.deps, { price: 1_000, stock: 100 })
    const { userCouponId } = await giveCoupon(t.deps, userId, { type: 'FIXED', value: 500 })
    const responses = await Promise.all(
      Array.from({ length: 5 }, () => order(token, { items: [{ productId: p, quantity: 1 }], userCouponId })),
    )
    expect(tally(responses)).toEqual({ '201': 1, '409 COUPON_NOT_USABLE': 4 })
    expect(await checkInvariants(t.deps.db, { productIds: [p], userIds: [userId] })).toEqual([])
  })

  it('20 concurrent orders with one Idempotency-Key make one order', async () => {
    const { userId, token } = await buyer(100_000)
    const p = await insertProduct(t.deps, { price: 1_000, stock: 100 })
    const body = { items: [{ productId: p, quantity: 2 }] }
    const headers = { 'Idempotency-Key': `order-${userId}` }
    const responses = await Promise.all(Array.from({ length: 20 }, () => order(token, body, headers)))
    const counts = tally(responses)
    expect((counts['201'] ?? 0) + (counts['409 IDEMPOTENCY_KEY_IN_USE'] ?? 0)).toBe(20)
    expect(await orderCount([userId])).toBe(1)
    expect(await stockOf(p)).toBe(98)
    const first = responses.find((r) => r.status === 201 && r.headers.get('Idempotent-Replayed') === null)
    const replay = await order(token, body, headers)
    expect(replay.status).toBe(201)
    expect(replay.headers.get('Idempotent-Replayed')).toBe('true')
    expect(replay.body).toEqual(first?.body)
    expectProblemShape(
      await order(token, { items: [{ productId: p, quantity: 3 }] }, headers),
      422,
      'IDEMPOTENCY_KEY_REUSED',
    )
    expect(await checkInvariants(t.deps.db, { productIds: [p], userIds: [userId] })).toEqual([])
  })

  it('a failure after a stock update rolls the whole order back', async () => {
    const { userId, token } = await buyer(100_000)
    const first = await insertProduct(t.deps, { stock: 10 })
    const second = await insertProduct(t.deps, { stock: 10 })
    const { userCouponId } = await giveCoupon(t.deps, userId, { type: 'FIXED', value: 100 })
    // Stock is taken in ascending id order, so `first` is updated before the trigger fails on `second`.
    const trigger = `fail_stock_${second}`
    await t.deps.db.execute(
      sql.raw(`CREATE TRIGGER ${trigger} BEFORE UPDATE ON products FOR EACH ROW
        BEGIN IF NEW.id = ${second} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected fault'; END IF; END`),
    )
    try {
      const res = await order(token, {
        items: [
          { productId: second, quantity: 1 },
          { productId: first, quantity: 1 },
        ],
        userCouponId,
      })
      expect(res.status).toBe(500)
      expect(res.text).not.toContain('injected fault')
    } finally {
      await t.deps.db.execute(sql.raw(`DROP TRIGGER IF EXISTS ${trigger}`))
    }
    expect([await stockOf(first), await stockOf(second)]).toEqual([10, 10])
    expect(await balanceOf(userId)).toBe(100_000)
    expect(await orderCount([userId])).toBe(0)
    const [coupon] = await t.deps.db.select().from(userCoupons).where(eq(userCoupons.id, userCouponId))
    expect(coupon?.status).toBe('AVAILABLE')
    expect(await checkInvariants(t.deps.db, { productIds: [first, second], userIds: [userId] })).toEqual([])
  })
})
