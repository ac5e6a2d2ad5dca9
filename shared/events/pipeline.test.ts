import { randomInt } from 'node:crypto'
import { sql } from 'drizzle-orm'
import * as v from 'valibot'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import createOrderCancelApp from '../../functions/order-cancel/handler'
import createOrderCreateApp from '../../functions/order-create/handler'
import createOutboxRelayWorker from '../../functions/outbox-relay/handler'
import createProductPopularApp from '../../functions/product-popular/handler'
import createStatsConsumerWorker from '../../functions/stats-consumer/handler'
import { dailyProductSales, outbox, processedEvents } from '../db/schema'
import { checkInvariants } from '../invariants/check'
import type { Order } from '../orders/orders'
import type { RuntimeDeps } from '../runtime/deps'
import type { RunningWorker } from '../runtime/discover'
import { businessDay } from '../stats/business-day'
import { popularWindow } from '../stats/popular'
import { checkJsonSchema, type JsonSchema, loadEventContract } from '../testing/event-contract'
import { createEventRig, type EventRig, type ObservedMessage, percentile, waitFor } from '../testing/events'
import {
  call,
  createTestApp,
  fundUser,
  insertProduct,
  type TestResponse,
  tokenFor,
  uniqueUserId,
} from '../testing/harness'
import type { EventEnvelope } from './outbox'
import { EventEnvelopeSchema } from './schema'
import type { EventTopology } from './topology'

/*
 * The whole path of docs/events.md with real HTTP orders: order-create and order-cancel commit outbox rows, the
 * relay publishes them, a queue bound to commerce.events receives them, the statistics consumer books
 * them, and the popular list shows them. RabbitMQ is cut off in the middle (the relay and the consumer
 * reach it through a proxy the test controls). The database is the test's own, so every count is exact.
 */

const bodyOf = (message: ObservedMessage) => message.body as EventEnvelope

let rig: EventRig | undefined
let proxy: EventRig['proxy']
let deps: RuntimeDeps
let topology: EventTopology
let observer: EventRig['observer']
let workers: RunningWorker[] = []
let app: ReturnType<typeof createTestApp>

beforeAll(async () => {
  rig = await createEventRig('pipeline')
  ;({ proxy, deps, topology, observer } = rig)
  workers = [createOutboxRelayWorker(deps, { topology }), createStatsConsumerWorker(deps, { topology })]
  for (const worker of workers) await worker.start()
  app = createTestApp(deps, [createOrderCreateApp, createOrderCancelApp, (d) => createProductPopularApp(d)])
})

afterAll(async () => {
  for (const worker of workers) await worker.stop()
  await rig?.close()
})

/** Runs `tasks` with at most `limit` in flight. */
async function inParallel<T>(limit: number, tasks: Array<() => Promise<T>>): Promise<T[]> {
  const results: T[] = new Array(tasks.length)
  let next = 0
  const lane = async () => {
    while (next < tasks.length) {
      const i = next++
      const task = tasks[i]
      if (task) results[i] = await task()
    }
  }
  await Promise.all(Array.from({ length: limit }, lane))
  return results
}

describe('order events, end to end', () => {
  it('200 orders and 20 cancels yield exactly 200 order.completed and 20 order.cancelled, through an outage', async () => {
    const products = await Promise.all(
      [1_000, 2_500, 4_000, 700, 12_000, 3_300].map((price, i) =>
        insertProduct(deps, { name: `pipeline ${i}`, price, stock: 10_000 }),
      ),
    )
    const scarce = await insertProduct(deps, { name: 'pipeline scarce', price: 50_000, stock: 10 })
    const users = Array.from({ length: 30 }, () => uniqueUserId())
    for (const user of users) await fundUser(deps, user, 10_000_000)
    const tokens = new Map(await Promise.all(users.map(async (u) => [u, await tokenFor(deps, u)] as const)))

    const answeredAt = new Map<number, number>()
    const place = (user: number, items: Array<{ productId: number; quantity: number }>) => async () => {
      const response = await call(app, 'POST', '/v1/orders', { token: tokens.get(user), body: { items } })
      if (response.status === 201) answeredAt.set((response.body as Order).id, Date.now())
      return response
    }
    const randomOrder = (i: number) => {
      const user = users[i % users.length] as number
      const lines = [...products].sort(() => Math.random() - 0.5).slice(0, 1 + (i % 3))
      return place(
        user,
        lines.map((productId) => ({ productId, quantity: randomInt(1, 6) })),
      )
    }

    // Before the outage: 100 orders, 20 at a time, all delivered before the cut.
    const before = await inParallel(
      20,
      Array.from({ length: 100 }, (_, i) => randomOrder(i)),
    )
    expect(before.every((r) => r.status === 201)).toBe(true)
    const beforeIds = new Set(before.map((r) => (r.body as Order).id))
    const delivered = () => observer.messages.filter((m) => beforeIds.has(bodyOf(m).data.orderId))
    await waitFor('the orders before the outage to be delivered', () => delivered().length >= 100)
    // The commit lies between the transaction's start (occurredAt) and the HTTP answer: both bounds.
    const fromStart = delivered().map((m) => m.receivedAt - Date.parse(bodyOf(m).occurredAt))
    const fromAnswer = delivered().map(
      (m) => m.receivedAt - (answeredAt.get(bodyOf(m).data.orderId) ?? Number.NaN),
    )
    console.log(
      'commit-to-queue latency, 100 HTTP orders 20 at a time (app, relay and consumer in one process): ' +
        `from transaction start p50 ${percentile(fromStart, 50)} ms, p99 ${percentile(fromStart, 99)} ms; ` +
        `from the HTTP answer p50 ${percentile(fromAnswer, 50)} ms, p99 ${percentile(fromAnswer, 99)} ms`,
    )

    // RabbitMQ cut off: orders (and cancels) still succeed; their events wait in the outbox.
    await proxy.cut()
    const during = await inParallel(20, [
      ...Array.from({ length: 90 }, (_, i) => randomOrder(100 + i)),
      // 15 orders for the last 10 units of the scarce product: 10 succeed, 5 are refused and roll back.
      ...Array.from({ length: 15 }, (_, i) =>
        place(users[i] as number, [{ productId: scarce, quantity: 1 }]),
      ),
    ])
    const refused = during.filter((r) => r.status === 409)
    expect(refused).toHaveLength(5)
    expect(refused.every((r) => (r.body as { code: string }).code === 'INSUFFICIENT_STOCK')).toBe(true)
    const placed = [...before, ...during].filter((r) => r.status === 201).map((r) => r.body as Order)
    expect(placed).toHaveLength(200)

    const toCancel = placed.slice(0, 20)
    const cancel = (order: Order) => () =>
      call(app, 'POST', `/v1/orders/${order.id}/cancel`, { token: tokens.get(order.userId) })
    const cancelledDuring = await inParallel(10, toCancel.slice(0, 10).map(cancel))
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    expect(observer.messages.filter((m) => m.receivedAt > Date.now() - 900)).toEqual([])
    await proxy.restore()
    const cancelledAfter = await inParallel(10, toCancel.slice(10).map(cancel))
    const cancelled = [...cancelledDuring, ...cancelledAfter]
    expect(cancelled.every((r: TestResponse) => r.status === 200)).toBe(true)

    // Every event arrives; counted by eventId, exactly one per order and per cancellation.
    await waitFor('220 distinct events on the exchange', () => observer.byEventId().size >= 220, 60_000)
    await new Promise((resolve) => setTimeout(resolve, 500))
    const events = [...observer.byEventId().values()].flatMap((copies) => copies.slice(0, 1))
    const completed = events.filter((m) => m.routingKey === 'order.completed')
    const cancellations = events.filter((m) => m.routingKey === 'order.cancelled')
    expect(completed).toHaveLength(200)
    expect(cancellations).toHaveLength(20)
    const orderIds = (list: typeof events) => list.map((m) => bodyOf(m).data.orderId).sort((a, b) => a - b)
    expect(orderIds(completed)).toEqual(placed.map((o) => o.id).sort((a, b) => a - b))
    expect(orderIds(cancellations)).toEqual(toCancel.map((o) => o.id).sort((a, b) => a - b))
    const copies = [...observer.byEventId().values()].filter((list) => list.length > 1).length
    console.log(`end to end: 220 events, ${copies} delivered more than once (deduped by eventId)`)

    // Documented properties and body, checked against the AsyncAPI document and the valibot schema.
    const { payloads } = await loadEventContract()
    const byOrder = new Map(placed.map((o) => [o.id, o]))
    for (const message of events) {
      const body = bodyOf(message)
      expect(checkJsonSchema(payloads.get(message.routingKey) as JsonSchema, body)).toEqual([])
      expect(v.safeParse(EventEnvelopeSchema, body).success).toBe(true)
      expect(message.properties).toMatchObject({
        deliveryMode: 2,
        contentType: 'application/json',
        messageId: body.eventId,
        type: message.routingKey,
        timestamp: Math.floor(Date.parse(body.occurredAt) / 1000),
      })
      const order = byOrder.get(body.data.orderId)
      expect(body.data).toMatchObject({
        userId: order?.userId,
        subtotal: order?.subtotal,
        discount: order?.discount,
        total: order?.total,
        paidAt: order?.paidAt,
        items: order?.items.map(({ productId, quantity, unitPrice }) => ({ productId, quantity, unitPrice })),
      })
    }
    const [outboxRows] = await deps.db.select({ n: sql<number>`count(*)` }).from(outbox)
    expect(Number(outboxRows?.n)).toBe(220)

    // The statistics consumer booked each event once: sales per day and product = paid minus cancelled.
    await waitFor(
      'every event to be booked',
      async () => {
        const [row] = await deps.db.select({ n: sql<number>`count(*)` }).from(processedEvents)
        return Number(row?.n) === 220
      },
      30_000,
    )
    const cancelledIds = new Set(toCancel.map((o) => o.id))
    const expected = new Map<string, { soldQuantity: number; revenue: number }>()
    for (const order of placed) {
      if (cancelledIds.has(order.id)) continue
      const day = businessDay(new Date(order.paidAt), deps.config.businessTimeZone)
      for (const line of order.items) {
        const key = `${day} ${line.productId}`
        const sum = expected.get(key) ?? { soldQuantity: 0, revenue: 0 }
        expected.set(key, {
          soldQuantity: sum.soldQuantity + line.quantity,
          revenue: sum.revenue + line.lineTotal,
        })
      }
    }
    const booked = await deps.db.select().from(dailyProductSales)
    expect(
      new Map(
        booked
          .filter((row) => row.soldQuantity !== 0)
          .map((row) => [
            `${row.day} ${row.productId}`,
            { soldQuantity: row.soldQuantity, revenue: row.revenue },
          ]),
      ),
    ).toEqual(expected)

    // The popular list matches the ranking computed by hand from the same orders.
    const window = popularWindow(new Date(), deps.config.businessTimeZone)
    const totals = new Map<number, { soldQuantity: number; revenue: number }>()
    for (const [key, sum] of expected) {
      const [day, productId] = key.split(' ') as [string, string]
      if (day < window.from || day > window.to) continue
      const t = totals.get(Number(productId)) ?? { soldQuantity: 0, revenue: 0 }
      totals.set(Number(productId), {
        soldQuantity: t.soldQuantity + sum.soldQuantity,
        revenue: t.revenue + sum.revenue,
      })
    }
    const names = new Map(placed.flatMap((o) => o.items.map((l) => [l.productId, l] as const)))
    const ranking = [...totals.entries()]
      .sort(([a, x], [b, y]) => y.soldQuantity - x.soldQuantity || y.revenue - x.revenue || a - b)
      .slice(0, 5)
      .map(([productId, t], i) => ({
        rank: i + 1,
        productId,
        name: names.get(productId)?.name,
        price: names.get(productId)?.unitPrice,
        soldQuantity: t.soldQuantity,
      }))
    const popular = await call(app, 'GET', '/v1/products/popular')
    expect(popular.status).toBe(200)
    expect(popular.body).toEqual({ ...window, items: ranking })

    // And the order side's own invariants hold in MySQL.
    expect(await checkInvariants(deps.db, { productIds: [...products, scarce], userIds: users })).toEqual([])
  })
})
