import { randomInt } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDatabase, type Database } from '../../shared/db/client'
import type { Deps } from '../../shared/deps'
import type { EventEnvelope } from '../../shared/events/outbox'
import type { ValidEventEnvelope } from '../../shared/events/schema'
import { connectRedis, createRedis, type Redis } from '../../shared/redis/client'
import { type RuntimeDeps, redisKeyPrefix } from '../../shared/runtime/deps'
import { discoverFunctions } from '../../shared/runtime/discover'
import { addDays } from '../../shared/stats/business-day'
import type { PopularProducts } from '../../shared/stats/popular'
import { applyOrderEvent } from '../../shared/stats/sales'
import { createTcpProxy, orderEnvelope, orderEventData, throughProxy } from '../../shared/testing/events'
import {
  call,
  createTestApp,
  createTestDeps,
  expectProblemShape,
  insertProduct,
} from '../../shared/testing/harness'
import createProductPopularApp from './handler'

let deps: RuntimeDeps

beforeAll(async () => {
  deps = await createTestDeps()
})
afterAll(async () => {
  await deps.close()
})

/**
 * The aggregates are shared by every test in the database, so each test here works on a business day of
 * its own, far in the future, where only its own events are booked.
 */
const ownDay = () =>
  new Date(Date.UTC(3000 + randomInt(0, 900), randomInt(0, 12), randomInt(1, 28))).toISOString().slice(0, 10)
/** 09:00 in Seoul on `day`. */
const morningOf = (day: string) => new Date(`${day}T00:00:00.000Z`)

type Sale = { productId: number; quantity: number; unitPrice: number }

/** Books an order event through the statistics verb, as the consumer does with a delivered message. */
async function book(type: EventEnvelope['type'], day: string, items: Sale[], orderId?: number) {
  const envelope = orderEnvelope(
    type,
    orderEventData({ type, items, orderId, paidAt: morningOf(day), cancelledAt: morningOf(day) }),
  )
  await applyOrderEvent(deps.db, deps.config.businessTimeZone, envelope as ValidEventEnvelope)
  return envelope
}

const popularApp = (appDeps: Deps, now: () => Date) =>
  createTestApp(appDeps, [(d) => createProductPopularApp(d, { now })])

describe('GET /v1/products/popular', () => {
  it('ranks the window’s best sellers as computed by hand: cancellations out, ties by revenue then id', async () => {
    const today = ownDay()
    const ids: number[] = []
    for (let i = 0; i < 8; i++)
      ids.push(await insertProduct(deps, { name: `popular ${i}`, price: 1_000 * (i + 1) }))
    const [p0, p1, p2, p3, p4, p5, p6, p7] = ids as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ]
    const events: Array<{ type: EventEnvelope['type']; day: string; items: Sale[]; orderId?: number }> = [
      { type: 'order.completed', day: today, items: [{ productId: p0, quantity: 5, unitPrice: 1_000 }] },
      {
        type: 'order.completed',
        day: addDays(today, -1),
        items: [{ productId: p1, quantity: 3, unitPrice: 2_000 }],
      },
      {
        type: 'order.completed',
        day: addDays(today, -2),
        items: [{ productId: p1, quantity: 3, unitPrice: 2_000 }],
      },
      // p2 and p3 tie on units; p3 made more money.
      { type: 'order.completed', day: today, items: [{ productId: p2, quantity: 4, unitPrice: 1_000 }] },
      { type: 'order.completed', day: today, items: [{ productId: p3, quantity: 4, unitPrice: 3_000 }] },
      // p4 and p5 tie on units and revenue: the lower id first.
      {
        type: 'order.completed',
        day: addDays(today, -1),
        items: [{ productId: p4, quantity: 2, unitPrice: 500 }],
      },
      {
        type: 'order.completed',
        day: addDays(today, -1),
        items: [{ productId: p5, quantity: 2, unitPrice: 500 }],
      },
      // Outside the window: three days ago, and tomorrow.
      {
        type: 'order.completed',
        day: addDays(today, -3),
        items: [{ productId: p6, quantity: 50, unitPrice: 100 }],
      },
      {
        type: 'order.completed',
        day: addDays(today, 1),
        items: [{ productId: p6, quantity: 50, unitPrice: 100 }],
      },
      // p7 would lead, but its order was cancelled.
      {
        type: 'order.completed',
        day: today,
        orderId: 2 ** 50 + 777,
        items: [{ productId: p7, quantity: 20, unitPrice: 100 }],
      },
      {
        type: 'order.cancelled',
        day: today,
        orderId: 2 ** 50 + 777,
        items: [{ productId: p7, quantity: 20, unitPrice: 100 }],
      },
    ]
    for (const e of events) await book(e.type, e.day, e.items, e.orderId)

    // The ranking by hand, from the events above.
    const from = addDays(today, -2)
    const totals = new Map<number, { quantity: number; revenue: number }>()
    for (const e of events) {
      if (e.day < from || e.day > today) continue
      const sign = e.type === 'order.completed' ? 1 : -1
      for (const line of e.items) {
        const t = totals.get(line.productId) ?? { quantity: 0, revenue: 0 }
        totals.set(line.productId, {
          quantity: t.quantity + sign * line.quantity,
          revenue: t.revenue + sign * line.quantity * line.unitPrice,
        })
      }
    }
    const expected = [...totals.entries()]
      .filter(([, t]) => t.quantity > 0)
      .sort(([a, ta], [b, tb]) => tb.quantity - ta.quantity || tb.revenue - ta.revenue || a - b)
      .slice(0, 5)
      .map(([productId, t], i) => ({
        rank: i + 1,
        productId,
        name: `popular ${ids.indexOf(productId)}`,
        price: 1_000 * (ids.indexOf(productId) + 1),
        soldQuantity: t.quantity,
      }))
    expect(expected.map((e) => e.productId)).toEqual([p1, p0, p3, p2, p4])

    const res = await call(
      popularApp(deps, () => morningOf(today)),
      'GET',
      '/v1/products/popular',
    )
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ from, to: today, items: expected })
  })

  it('serves from the Redis cache for POPULAR_CACHE_TTL_SECONDS', async () => {
    const today = ownDay()
    const product = await insertProduct(deps, { name: 'cached best seller' })
    await book('order.completed', today, [{ productId: product, quantity: 2, unitPrice: 100 }])
    const app = popularApp(deps, () => morningOf(today))
    const first = await call(app, 'GET', '/v1/products/popular')
    expect((first.body as PopularProducts).items).toEqual([
      { rank: 1, productId: product, name: 'cached best seller', price: 1_000, soldQuantity: 2 },
    ])
    await book('order.completed', today, [{ productId: product, quantity: 5, unitPrice: 100 }])
    const second = await call(app, 'GET', '/v1/products/popular')
    expect(second.body).toEqual(first.body)
    const ttl = await deps.redis.pttl(`cache:popular-products:${today}`)
    expect(ttl).toBeGreaterThan(0)
    expect(ttl).toBeLessThanOrEqual(deps.config.popularCacheTtlSeconds * 1000)
  })

  it('answers the last good list, or an empty one, while the statistics store (and Redis) are down', async () => {
    // The replica and Redis are reached through proxies the test cuts, as a network failure would.
    const mysqlUrl = new URL(deps.config.databaseUrl)
    const redisUrl = new URL(deps.config.redisUrl)
    const mysqlProxy = await createTcpProxy(Number(mysqlUrl.port || 3306), mysqlUrl.hostname)
    const redisProxy = await createTcpProxy(Number(redisUrl.port || 6379), redisUrl.hostname)
    const replica: Database = createDatabase({
      url: throughProxy(deps.config.databaseUrl, mysqlProxy.port),
      connectionLimit: 2,
    })
    const prefix = redisKeyPrefix(deps.config.databaseUrl)
    const redis: Redis = createRedis(throughProxy(deps.config.redisUrl, redisProxy.port), prefix)
    await connectRedis(redis)
    try {
      let today = ownDay()
      const product = await insertProduct(deps, { name: 'last good' })
      await book('order.completed', today, [{ productId: product, quantity: 9, unitPrice: 100 }])
      const faulty = { ...deps, dbRead: replica.dbRead, redis }
      const app = popularApp(faulty, () => morningOf(today))
      const good = await call(app, 'GET', '/v1/products/popular')
      expect(good.status).toBe(200)
      expect((good.body as PopularProducts).items[0]?.productId).toBe(product)

      // Statistics store down, on a new day (no cache entry): the last good list from Redis.
      await mysqlProxy.cut()
      today = addDays(today, 1)
      const fromRedis = await call(app, 'GET', '/v1/products/popular')
      expect(fromRedis.status).toBe(200)
      expect(fromRedis.body).toEqual(good.body)

      // Redis down as well: this process's own copy.
      await redisProxy.cut()
      today = addDays(today, 1)
      const fromMemory = await call(app, 'GET', '/v1/products/popular')
      expect(fromMemory.status).toBe(200)
      expect(fromMemory.body).toEqual(good.body)

      // A fresh process with nothing to fall back on: an empty list for the current window.
      await redisProxy.restore()
      await redis.del('popular-products:last-good').catch(() => undefined)
      await waitForRedis(redis)
      await redis.del('popular-products:last-good')
      const fresh = await call(
        popularApp(faulty, () => morningOf(today)),
        'GET',
        '/v1/products/popular',
      )
      expect(fresh.status).toBe(200)
      expect(fresh.body).toEqual({ from: addDays(today, -2), to: today, items: [] })
    } finally {
      redis.disconnect()
      await replica.close().catch(() => undefined)
      await mysqlProxy.close()
      await redisProxy.close()
    }
  })

  it('rejects unknown query parameters', async () => {
    const res = await call(
      popularApp(deps, () => new Date()),
      'GET',
      '/v1/products/popular?limit=10',
    )
    expectProblemShape(res, 400, 'VALIDATION_FAILED')
  })

  it('wins over /v1/products/:productId when every function is discovered from functions/', async () => {
    const functions = await discoverFunctions()
    const app = createTestApp(deps, functions)
    const res = await call(app, 'GET', '/v1/products/popular')
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({
      from: expect.any(String),
      to: expect.any(String),
      items: expect.any(Array),
    })
    const product = await insertProduct(deps, { name: 'still reachable' })
    expect((await call(app, 'GET', `/v1/products/${product}`)).body).toMatchObject({ id: product })
  })
})

async function waitForRedis(redis: Redis) {
  for (let i = 0; i < 100 && redis.status !== 'ready'; i++) await new Promise((r) => setTimeout(r, 50))
}
