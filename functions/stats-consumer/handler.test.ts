import { randomInt } from 'node:crypto'
import type { Channel, ChannelModel } from 'amqplib'
import { and, between, eq, inArray } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dailyProductSales, processedEvents } from '../../shared/db/schema'
import { parseEvent, RETRY_COUNT_HEADER } from '../../shared/events/consumer'
import type { EventEnvelope } from '../../shared/events/outbox'
import { createEventPublisher, type EventPublisher } from '../../shared/events/publisher'
import {
  deadLetterQueue,
  deleteTopology,
  type EventTopology,
  eventTopology,
} from '../../shared/events/topology'
import type { RuntimeDeps } from '../../shared/runtime/deps'
import type { RunningWorker } from '../../shared/runtime/discover'
import { addDays, businessDay } from '../../shared/stats/business-day'
import { applyOrderEvents, STATISTICS_CONSUMER } from '../../shared/stats/sales'
import {
  connectForTest,
  orderEnvelope,
  orderEventData,
  uniqueSuffix,
  waitFor,
} from '../../shared/testing/events'
import { createTestDeps, insertProduct } from '../../shared/testing/harness'
import createStatsConsumerWorker from './handler'

let deps: RuntimeDeps
let topology: EventTopology
let consumer: RunningWorker
let publisher: EventPublisher
let admin: ChannelModel
let channel: Channel

/**
 * The aggregates are shared by every test in the database, so this file books its sales on business days
 * of its own, far in the future, and on products of its own.
 */
const ownDay = () => {
  const day = new Date(Date.UTC(2200 + randomInt(0, 700), randomInt(0, 12), randomInt(1, 28)))
  return day.toISOString().slice(0, 10)
}
/** Noon in Seoul on `day`. */
const noonOn = (day: string) => new Date(`${day}T03:00:00.000Z`)

const envelopeOf = async (type: EventEnvelope['type'], data: EventEnvelope['data']) =>
  orderEnvelope(type, data)

const publish = (envelope: EventEnvelope) =>
  publisher.publish({
    eventId: envelope.eventId,
    type: envelope.type,
    body: JSON.stringify(envelope),
    occurredAt: new Date(envelope.occurredAt),
  })

const salesOf = async (day: string, productIds: number[]) => {
  const rows = await deps.db
    .select()
    .from(dailyProductSales)
    .where(and(eq(dailyProductSales.day, day), inArray(dailyProductSales.productId, productIds)))
  return Object.fromEntries(
    rows.map((r) => [r.productId, { soldQuantity: r.soldQuantity, revenue: r.revenue }]),
  )
}

const metricValue = async (name: string, labels: Record<string, string>) => {
  const metric = await deps.metrics.registry.getSingleMetric(name)?.get()
  return (metric?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
    .reduce((sum, v) => sum + v.value, 0)
}

beforeAll(async () => {
  deps = await createTestDeps()
  topology = eventTopology(uniqueSuffix('stats'))
  publisher = await createEventPublisher({ url: deps.config.rabbitmqUrl, topology, logger: deps.logger })
  await waitFor('the publisher to connect', () => publisher.connected)
  admin = await connectForTest(deps.config.rabbitmqUrl)
  channel = await admin.createChannel()
  consumer = createStatsConsumerWorker(deps, { topology, maxRetries: 2, retryDelayMs: 50 })
  await consumer.start()
})

afterAll(async () => {
  await consumer?.stop()
  await publisher?.close()
  if (admin) {
    await deleteTopology(admin, topology).catch(() => undefined)
    await admin.close()
  }
  await deps?.close()
})

describe('statistics consumer', () => {
  it('adds completed orders and subtracts cancellations, on the day the order was paid, once per event', async () => {
    const day = ownDay()
    const [a, b] = [await insertProduct(deps), await insertProduct(deps)]
    const paid = noonOn(day)
    const first = await envelopeOf(
      'order.completed',
      orderEventData({
        type: 'order.completed',
        items: [
          { productId: a, quantity: 3, unitPrice: 1_000 },
          { productId: b, quantity: 1, unitPrice: 5_000 },
        ],
        paidAt: paid,
      }),
    )
    const second = await envelopeOf(
      'order.completed',
      orderEventData({
        type: 'order.completed',
        items: [{ productId: a, quantity: 2, unitPrice: 1_200 }],
        paidAt: paid,
      }),
    )
    // Cancelled the next day: it still takes back from the day of payment.
    const cancel = await envelopeOf(
      'order.cancelled',
      orderEventData({
        type: 'order.cancelled',
        orderId: second.data.orderId,
        items: second.data.items,
        paidAt: paid,
        cancelledAt: noonOn(addDays(day, 1)),
      }),
    )
    // The broker delivers at least once: the duplicate must change nothing.
    for (const event of [first, second, first, cancel, second]) await publish(event)

    const ids = [first.eventId, second.eventId, cancel.eventId]
    await waitFor('the three events to be applied', async () => {
      const rows = await deps.db
        .select()
        .from(processedEvents)
        .where(and(eq(processedEvents.consumer, STATISTICS_CONSUMER), inArray(processedEvents.eventId, ids)))
      return rows.length === 3
    })
    await waitFor('the duplicates to be acknowledged', async () => {
      const [completed, cancelled] = await Promise.all([
        channel.checkQueue(topology.queues.orderCompleted),
        channel.checkQueue(topology.queues.orderCancelled),
      ])
      return completed.messageCount === 0 && cancelled.messageCount === 0
    })
    expect(await salesOf(day, [a, b])).toEqual({
      [a]: { soldQuantity: 3, revenue: 3_000 },
      [b]: { soldQuantity: 1, revenue: 5_000 },
    })
    expect(await salesOf(addDays(day, 1), [a, b])).toEqual({})
    // A queue's count leaves out messages delivered and not yet acknowledged: wait for both duplicates.
    await waitFor(
      'both duplicates to be counted',
      async () =>
        (await metricValue('events_consumed_total', {
          consumer: STATISTICS_CONSUMER,
          outcome: 'duplicate',
        })) >= 2,
    )
  })

  it('applies a batch that mixes new events with ones seen before, each exactly once', async () => {
    const day = ownDay()
    const product = await insertProduct(deps)
    const completed = async (quantity: number) => {
      const envelope = await envelopeOf(
        'order.completed',
        orderEventData({
          type: 'order.completed',
          items: [{ productId: product, quantity, unitPrice: 1_000 }],
          paidAt: noonOn(day),
        }),
      )
      return parseEvent(Buffer.from(JSON.stringify(envelope)))
    }
    const [seen, fresh, other] = [await completed(1), await completed(2), await completed(4)]
    const zone = deps.config.businessTimeZone
    expect(await applyOrderEvents(deps.db, zone, [seen])).toEqual(['applied'])
    // A redelivery beside new events, and one event twice in the same batch.
    expect(await applyOrderEvents(deps.db, zone, [seen, fresh, other, fresh])).toEqual([
      'duplicate',
      'applied',
      'applied',
      'duplicate',
    ])
    expect(await applyOrderEvents(deps.db, zone, [fresh, other])).toEqual(['duplicate', 'duplicate'])
    expect(await salesOf(day, [product])).toEqual({ [product]: { soldQuantity: 7, revenue: 7_000 } })
  })

  it('books an order on its business day in BUSINESS_TIMEZONE, not its UTC day', async () => {
    const day = ownDay()
    const product = await insertProduct(deps)
    // 15:30 UTC is 00:30 the next morning in Seoul.
    const paidAt = new Date(`${day}T15:30:00.000Z`)
    expect(businessDay(paidAt, deps.config.businessTimeZone)).toBe(addDays(day, 1))
    const event = await envelopeOf(
      'order.completed',
      orderEventData({
        type: 'order.completed',
        items: [{ productId: product, quantity: 4, unitPrice: 700 }],
        paidAt,
      }),
    )
    await publish(event)
    await waitFor(
      'the sale to be booked',
      async () => Object.keys(await salesOf(addDays(day, 1), [product])).length === 1,
    )
    expect(await salesOf(addDays(day, 1), [product])).toEqual({
      [product]: { soldQuantity: 4, revenue: 2_800 },
    })
    expect(await salesOf(day, [product])).toEqual({})
  })

  it('dead-letters a message it cannot process after bounded retries, and goes on with the next one', async () => {
    const day = ownDay()
    const product = await insertProduct(deps)
    const retriedBefore = await metricValue('events_consumed_total', {
      consumer: STATISTICS_CONSUMER,
      outcome: 'retried',
    })
    const confirm = await admin.createConfirmChannel()
    const send = (body: string, messageId: string) =>
      new Promise<void>((resolve, reject) => {
        confirm.publish(
          topology.exchange,
          'order.completed',
          Buffer.from(body),
          { persistent: true, contentType: 'application/json', messageId, type: 'order.completed' },
          (error: unknown) => (error ? reject(new Error('not confirmed')) : resolve()),
        )
      })
    await send('{"eventId": "not json', 'poison-json')
    await send(JSON.stringify({ eventId: 'x', type: 'order.completed', schemaVersion: 2 }), 'poison-schema')
    const good = await envelopeOf(
      'order.completed',
      orderEventData({
        type: 'order.completed',
        items: [{ productId: product, quantity: 1, unitPrice: 10_000 }],
        paidAt: noonOn(day),
      }),
    )
    await publish(good)
    await confirm.close()

    await waitFor(
      'the good message after the poison to be applied',
      async () => (await salesOf(day, [product]))[product] !== undefined,
    )
    const dlq = deadLetterQueue(topology.queues.orderCompleted)
    await waitFor(
      'both poison messages in the dead-letter queue',
      async () => (await channel.checkQueue(dlq)).messageCount === 2,
    )

    const dead = []
    for (let i = 0; i < 2; i++) {
      const message = await channel.get(dlq, { noAck: true })
      if (message) dead.push(message)
    }
    expect(dead.map((m) => m.properties.messageId).sort()).toEqual(['poison-json', 'poison-schema'])
    for (const message of dead) {
      // Two retries, then the reject: the broker's x-death records where it came from.
      expect(message.properties.headers?.[RETRY_COUNT_HEADER]).toBe(2)
      const deaths = message.properties.headers?.['x-death'] as Array<{ queue: string; reason: string }>
      expect(deaths[0]).toMatchObject({ queue: topology.queues.orderCompleted, reason: 'rejected' })
    }
    expect(
      await metricValue('events_consumed_total', { consumer: STATISTICS_CONSUMER, outcome: 'retried' }),
    ).toBe(retriedBefore + 4)
    expect((await channel.checkQueue(topology.queues.orderCompleted)).messageCount).toBe(0)
  })

  it('never loses a sale to concurrency: 100 events on the same products, delivered concurrently', async () => {
    const day = ownDay()
    const products = [await insertProduct(deps), await insertProduct(deps), await insertProduct(deps)]
    const events = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        envelopeOf(
          'order.completed',
          orderEventData({
            type: 'order.completed',
            items: products.map((productId, k) => ({
              productId,
              quantity: 1 + ((i + k) % 3),
              unitPrice: 100,
            })),
            paidAt: noonOn(day),
          }),
        ),
      ),
    )
    await Promise.all(events.map(publish))
    const expected = Object.fromEntries(
      products.map((productId, k) => {
        const quantity = events.reduce((sum, _, i) => sum + 1 + ((i + k) % 3), 0)
        return [productId, { soldQuantity: quantity, revenue: quantity * 100 }]
      }),
    )
    await waitFor('every event applied', async () => {
      const rows = await deps.db
        .select()
        .from(dailyProductSales)
        .where(and(between(dailyProductSales.day, day, day), inArray(dailyProductSales.productId, products)))
      return (
        rows.reduce((sum, r) => sum + r.soldQuantity, 0) ===
        Object.values(expected).reduce((s, e) => s + e.soldQuantity, 0)
      )
    })
    expect(await salesOf(day, products)).toEqual(expected)
  })
})
