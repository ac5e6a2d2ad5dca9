import { randomInt, randomUUID } from 'node:crypto'
import { Queue } from 'bullmq'
import { eq, inArray } from 'drizzle-orm'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { idempotencyKeys, outbox, processedEvents } from '../../shared/db/schema'
import type { OrderEventType } from '../../shared/events/outbox'
import { bullPrefix, OUTBOX_QUEUE } from '../../shared/events/outbox-queue'
import type { EventTopology } from '../../shared/events/topology'
import { type RuntimeDeps, redisKeyPrefix } from '../../shared/runtime/deps'
import { discoverWorkers, functionNames, type RunningWorker } from '../../shared/runtime/discover'
import {
  commitOutboxEvent,
  createEventRig,
  createTcpProxy,
  type EventRig,
  orderEventData,
  percentile,
  throughProxy,
  waitFor,
} from '../../shared/testing/events'
import createOutboxRelayWorker from './handler'

let rig: EventRig | undefined
let database: EventRig['database']
let proxy: EventRig['proxy']
let deps: RuntimeDeps
let topology: EventTopology
let admin: EventRig['admin']
let observer: EventRig['observer']
let relay: RunningWorker
let jobs: Queue
let jobsConnection: Redis

const startRelay = async () => {
  relay = createOutboxRelayWorker(deps, { topology, sweepIntervalMs: 500 })
  await relay.start()
}

const metricValue = async (name: string, labels: Record<string, string> = {}) => {
  const metric = await deps.metrics.registry.getSingleMetric(name)?.get()
  return (metric?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
    .reduce((sum, v) => sum + v.value, 0)
}

/** Writes `n` order events the way the order verbs do (commit, then notify unless told not to). */
async function writeEvents(n: number, options: { notify?: boolean } = {}) {
  const written: Array<Awaited<ReturnType<typeof commitOutboxEvent>>> = []
  for (let i = 0; i < n; i++) {
    const type: OrderEventType = i % 5 === 4 ? 'order.cancelled' : 'order.completed'
    const data = orderEventData({
      type,
      items: [
        { productId: randomInt(1, 1e9), quantity: 1 + (i % 3), unitPrice: 1_500 },
        { productId: randomInt(1e9, 2e9), quantity: 2, unitPrice: 990 },
      ],
      discount: i % 2 === 0 ? 500 : 0,
      userCouponId: i % 2 === 0 ? randomInt(1, 1e9) : null,
    })
    const event = await commitOutboxEvent(deps.db, type, data)
    if (options.notify !== false) await deps.outbox.notify()
    written.push(event)
  }
  return written
}

const arrived = (eventIds: string[]) => {
  const seen = observer.byEventId()
  return eventIds.every((id) => seen.has(id))
}

beforeAll(async () => {
  rig = await createEventRig('relay')
  ;({ database, proxy, deps, topology, admin, observer } = rig)
  jobsConnection = new Redis(deps.config.redisUrl, { maxRetriesPerRequest: null })
  jobs = new Queue(OUTBOX_QUEUE, {
    connection: jobsConnection,
    prefix: bullPrefix(redisKeyPrefix(database.url)),
  })
  await startRelay()
})

afterAll(async () => {
  await relay?.stop()
  await jobs?.close()
  jobsConnection?.disconnect()
  await rig?.close()
})

describe('outbox relay', () => {
  it('publishes every committed event once, with the documented properties and body, and marks it published', async () => {
    const warmup = await writeEvents(1)
    await waitFor('the relay to be up', () => arrived(warmup.map((w) => w.envelope.eventId)))
    const written = await writeEvents(120)
    const ids = written.map((w) => w.envelope.eventId)
    await waitFor('all events on the exchange', () => arrived(ids))

    const seen = observer.byEventId()
    for (const { envelope } of written) {
      const copies = seen.get(envelope.eventId) ?? []
      expect(copies).toHaveLength(1)
      const [message] = copies
      expect(message?.routingKey).toBe(envelope.type)
      expect(message?.properties).toMatchObject({
        deliveryMode: 2,
        contentType: 'application/json',
        messageId: envelope.eventId,
        type: envelope.type,
        timestamp: Math.floor(Date.parse(envelope.occurredAt) / 1000),
      })
      expect(message?.body).toEqual(envelope)
      // The stored text itself, byte for byte: the relay publishes it without parsing it again.
      expect(message?.raw).toBe(JSON.stringify(envelope))
    }

    const latencies = written.map(
      (w) => (seen.get(w.envelope.eventId)?.[0]?.receivedAt ?? Number.NaN) - w.committedAt,
    )
    console.log(
      `commit-to-queue latency over ${latencies.length} events (outbox level): ` +
        `p50 ${percentile(latencies, 50)} ms, p99 ${percentile(latencies, 99)} ms`,
    )

    // The contract's queues got them too: data.platform all, order.completed and order.cancelled their own.
    const channel = await admin.createChannel()
    const all = [...warmup, ...written]
    const completed = all.filter((w) => w.envelope.type === 'order.completed').length
    await waitFor('the queues to hold every message', async () => {
      const [platform, done, cancelled] = await Promise.all([
        channel.checkQueue(topology.queues.dataPlatform),
        channel.checkQueue(topology.queues.orderCompleted),
        channel.checkQueue(topology.queues.orderCancelled),
      ])
      return (
        platform.messageCount === all.length &&
        done.messageCount === completed &&
        cancelled.messageCount === all.length - completed
      )
    })
    await channel.close()

    await waitFor('rows marked published', async () => {
      const rows = await deps.db.select().from(outbox).where(inArray(outbox.eventId, ids))
      return rows.every((row) => row.publishedAt !== null)
    })
    expect(await metricValue('events_published_total', { outcome: 'published' })).toBeGreaterThanOrEqual(
      written.length,
    )
    await waitFor(
      'the unpublished gauge to read 0',
      async () => (await metricValue('outbox_unpublished_events')) === 0,
    )
  })

  it('delays events while RabbitMQ is cut off and delivers every one, once, when it is back', async () => {
    await proxy.cut()
    const during = await writeEvents(40)
    const ids = during.map((w) => w.envelope.eventId)
    await new Promise((resolve) => setTimeout(resolve, 2_000))
    expect(ids.some((id) => observer.byEventId().has(id))).toBe(false)
    await waitFor(
      'the gauge to count the waiting rows',
      async () => (await metricValue('outbox_unpublished_events')) >= 40,
    )

    const failedBefore = await metricValue('events_published_total', { outcome: 'failed' })
    await proxy.restore()
    await waitFor('every event written during the outage', () => arrived(ids), 30_000)

    const seen = observer.byEventId()
    const duplicates = ids.filter((id) => (seen.get(id)?.length ?? 0) > 1).length
    console.log(`outage: ${ids.length} events delivered after reconnect, ${duplicates} duplicate deliveries`)
    expect(new Set(ids.filter((id) => seen.has(id))).size).toBe(ids.length)
    // Jobs waited for the connection instead of burning their attempts against a broker that was away.
    expect(await metricValue('events_published_total', { outcome: 'failed' })).toBeLessThanOrEqual(
      failedBefore + 5,
    )
    await waitFor('rows marked published', async () => {
      const rows = await deps.db.select().from(outbox).where(inArray(outbox.eventId, ids))
      return rows.every((row) => row.publishedAt !== null)
    })
  })

  it('publishes rows committed while no relay ran, enqueued or not (a crash between commit and publish)', async () => {
    await relay.stop()
    const requeuedBefore = await metricValue('outbox_sweeper_requeued_total', { reason: 'not_enqueued' })
    const neverEnqueued = await writeEvents(15, { notify: false })
    const enqueuedOnly = await writeEvents(15)
    const ids = [...neverEnqueued, ...enqueuedOnly].map((w) => w.envelope.eventId)
    const unpublished = await deps.db.select().from(outbox).where(inArray(outbox.eventId, ids))
    expect(unpublished.every((row) => row.publishedAt === null)).toBe(true)

    await startRelay()
    await waitFor('the next relay to publish them', () => arrived(ids), 30_000)
    // Never tried, so drained directly: no retry job was needed for any of them.
    expect(await metricValue('outbox_sweeper_requeued_total', { reason: 'not_enqueued' })).toBe(
      requeuedBefore,
    )
  })

  it('re-publishes a row whose published_at was reset (an operator replaying it)', async () => {
    const [event] = await writeEvents(1)
    const eventId = event?.envelope.eventId ?? ''
    await waitFor('the first copy', () => observer.byEventId().has(eventId))

    await deps.db.update(outbox).set({ publishedAt: null }).where(eq(outbox.eventId, eventId))
    await waitFor('a second copy', () => (observer.byEventId().get(eventId)?.length ?? 0) === 2, 15_000)
    await waitFor('the row to be published again', async () => {
      const [row] = await deps.db.select().from(outbox).where(eq(outbox.eventId, eventId))
      return row?.publishedAt !== null
    })
  })

  it('retries an event no queue takes (basic.return) until one is bound, and keeps the job meanwhile', async () => {
    const eventId = randomUUID()
    const type = 'unrouted.test'
    await deps.db.insert(outbox).values({
      eventId,
      type,
      aggregateId: 1,
      payload: { eventId, type, note: 'routed nowhere until the test binds it' },
      createdAt: new Date(),
    })
    await deps.outbox.notify()
    await waitFor(
      'an unroutable outcome',
      async () => (await metricValue('events_published_total', { type, outcome: 'unroutable' })) >= 1,
    )
    const [row] = await deps.db.select().from(outbox).where(eq(outbox.eventId, eventId))
    expect(row?.publishedAt).toBeNull()
    await waitFor('a retry job for it', async () =>
      ['delayed', 'waiting', 'active'].includes(await jobs.getJobState(eventId)),
    )

    await observer.bind(type)
    await waitFor('the retried publish', () => observer.byEventId().has(eventId), 20_000)
    await waitFor('the row to be published', async () => {
      const [published] = await deps.db.select().from(outbox).where(eq(outbox.eventId, eventId))
      return published?.publishedAt !== null && (published?.attempts ?? 0) >= 2
    })
  })

  it('reconnects to Redis by itself after an outage and publishes what waited meanwhile', async () => {
    await relay.stop()
    const target = new URL(deps.config.redisUrl)
    const redisProxy = await createTcpProxy(Number(target.port || 6379), target.hostname)
    relay = createOutboxRelayWorker(
      { ...deps, config: { ...deps.config, redisUrl: throughProxy(deps.config.redisUrl, redisProxy.port) } },
      { topology, sweepIntervalMs: 500 },
    )
    try {
      await relay.start()
      const first = await writeEvents(5)
      await waitFor('events before the outage', () => arrived(first.map((w) => w.envelope.eventId)))

      await redisProxy.cut()
      // Notified (the producer's Redis is up) or not (as if it were down): both wait for the relay.
      const notified = await writeEvents(10)
      const notNotified = await writeEvents(10, { notify: false })
      await new Promise((resolve) => setTimeout(resolve, 1_500))
      await redisProxy.restore()
      const ids = [...notified, ...notNotified].map((w) => w.envelope.eventId)
      await waitFor('every event after Redis is back', () => arrived(ids), 30_000)
    } finally {
      await relay.stop()
      await redisProxy.close()
      await startRelay()
    }
  })

  it('deletes published rows after the retention period and purges expired idempotency keys and event ids', async () => {
    const day = 24 * 3600 * 1000
    const now = Date.now()
    const row = (publishedDaysAgo: number | null) => {
      const eventId = randomUUID()
      return {
        eventId,
        type: 'order.completed',
        aggregateId: 1,
        payload: { eventId },
        createdAt: new Date(now - 9 * day),
        publishedAt: publishedDaysAgo === null ? null : new Date(now - publishedDaysAgo * day),
      }
    }
    const old = row(8)
    const recent = row(6)
    await deps.db.insert(outbox).values([old, recent])
    const key = (hoursAgo: number) => ({
      userId: randomInt(1, 2 ** 47),
      key: randomUUID(),
      method: 'POST',
      path: '/v1/orders',
      requestHash: '0'.repeat(64),
      responseStatus: 201,
      responseBody: '{}',
      createdAt: new Date(now - hoursAgo * 3600 * 1000),
    })
    const expired = key(25)
    const live = key(1)
    await deps.db.insert(idempotencyKeys).values([expired, live])
    const applied = (daysAgo: number) => ({
      consumer: 'statistics',
      eventId: randomUUID(),
      processedAt: new Date(now - daysAgo * day),
    })
    const forgotten = applied(31)
    const remembered = applied(29)
    await deps.db.insert(processedEvents).values([forgotten, remembered])

    // Maintenance runs when a relay starts, then every 10 minutes.
    await relay.stop()
    await startRelay()
    await waitFor('the old row to be deleted', async () => {
      const rows = await deps.db
        .select({ eventId: outbox.eventId })
        .from(outbox)
        .where(inArray(outbox.eventId, [old.eventId, recent.eventId]))
      return rows.length === 1 && rows[0]?.eventId === recent.eventId
    })
    await waitFor('the expired key to be purged', async () => {
      const keys = await deps.db
        .select({ key: idempotencyKeys.key })
        .from(idempotencyKeys)
        .where(inArray(idempotencyKeys.key, [expired.key, live.key]))
      return keys.length === 1 && keys[0]?.key === live.key
    })
    await waitFor('event ids older than 30 days to be forgotten', async () => {
      const rows = await deps.db
        .select({ eventId: processedEvents.eventId })
        .from(processedEvents)
        .where(inArray(processedEvents.eventId, [forgotten.eventId, remembered.eventId]))
      return rows.length === 1 && rows[0]?.eventId === remembered.eventId
    })
  })
})

describe('worker discovery', () => {
  it('finds the relay and the statistics consumer from their folders (worker.ts), not from a list', async () => {
    const workers = await discoverWorkers()
    expect(workers.map((w) => w.name)).toEqual(expect.arrayContaining(['outbox-relay', 'stats-consumer']))
    for (const w of workers) {
      expect(w.worker.name).toBe(w.name)
      expect(typeof w.create).toBe('function')
    }
    // Workers have no route: the HTTP discovery leaves them out.
    expect(functionNames()).not.toContain('outbox-relay')
    expect(functionNames()).not.toContain('stats-consumer')
  })
})
