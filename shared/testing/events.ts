import { randomBytes, randomInt, randomUUID } from 'node:crypto'
import amqp, { type ChannelModel, type ConsumeMessage } from 'amqplib'
import { sql } from 'drizzle-orm'
import { Redis } from 'ioredis'
import type { Db } from '../db/client'
import {
  type EventEnvelope,
  type OrderEventData,
  type OrderEventType,
  writeOutboxEvent,
} from '../events/outbox'
import { declareTopology, deleteTopology, eventTopology } from '../events/topology'
import { applyMigrations } from '../runtime/deps'
import { createTestDeps, testConfig } from './harness'
import { createTcpProxy, type TcpProxy } from './tcp-proxy'

/*
 * Helpers for the event tests: real MySQL, Redis and RabbitMQ, isolated by name. Nothing here mocks.
 */

export const uniqueSuffix = (label: string) => `.test-${label}-${randomBytes(4).toString('hex')}`

/**
 * A freshly migrated database of the test file's own, through the same migration path as npm start.
 *
 * Why not the shared commerce_test: the relay's sweeper scans the whole outbox table by design, so two
 * relays in parallel test files (or a test relay and another file's order tests) would publish each
 * other's rows to their own exchanges. With a database of its own, its Redis key prefix (and so its
 * BullMQ queue) is its own too.
 */
export async function createIsolatedDatabase(label: string) {
  const name = `commerce_test_${label}_${randomBytes(4).toString('hex')}`
  const base = new URL(testConfig().databaseUrl)
  base.pathname = `/${name}`
  const url = base.toString()
  await applyMigrations(testConfig({ DATABASE_URL: url }))
  return {
    url,
    name,
    /** Drops the database and every Redis key under its prefix (never anything else). */
    async drop(db: Db) {
      await db.execute(sql.raw(`DROP DATABASE IF EXISTS \`${name}\``))
      const redis = new Redis(testConfig().redisUrl)
      try {
        let cursor = '0'
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', `${name}:*`, 'COUNT', 1000)
          cursor = next
          if (keys.length > 0) await redis.unlink(...keys)
        } while (cursor !== '0')
      } finally {
        redis.disconnect()
      }
    },
  }
}

/** The proxy the event and failure tests cut, blackhole and restore dependencies with (the fault suite's too). */
export { createTcpProxy, type TcpProxy }

export type ObservedMessage = {
  body: unknown
  raw: string
  properties: ConsumeMessage['properties']
  routingKey: string
  receivedAt: number
}

/**
 * A test's own view of the exchange: an exclusive queue bound with `pattern`, recording every message.
 * It sees what a queue bound like data.platform sees, without taking that queue's messages.
 */
export async function observeExchange(url: string, exchange: string, pattern = '#') {
  const connection = await amqp.connect(url)
  const channel = await connection.createChannel()
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true })
  await channel.bindQueue(queue, exchange, pattern)
  const messages: ObservedMessage[] = []
  await channel.consume(
    queue,
    (message) => {
      if (message === null) return
      const raw = message.content.toString('utf8')
      let body: unknown = raw
      try {
        body = JSON.parse(raw)
      } catch {
        // kept as text
      }
      messages.push({
        body,
        raw,
        properties: message.properties,
        routingKey: message.fields.routingKey,
        receivedAt: Date.now(),
      })
    },
    { noAck: true },
  )
  return {
    messages,
    queue,
    /** Binds the observer's queue to more routing keys (an exclusive queue only takes its own connection's binds). */
    async bind(more: string) {
      await channel.bindQueue(queue, exchange, more)
    },
    /** Messages by event id (message id): a list longer than one is a duplicate delivery. */
    byEventId() {
      const map = new Map<string, ObservedMessage[]>()
      for (const m of messages) {
        const id = String(m.properties.messageId)
        map.set(id, [...(map.get(id) ?? []), m])
      }
      return map
    },
    async close() {
      await connection.close().catch(() => undefined)
    },
  }
}

export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await condition()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

export const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN
}

/** Order event data as the order verbs write it, for tests that write outbox rows themselves. */
export function orderEventData(options: {
  type: OrderEventType
  orderId?: number
  userId?: number
  items: Array<{ productId: number; quantity: number; unitPrice: number }>
  discount?: number
  userCouponId?: number | null
  paidAt?: Date
  cancelledAt?: Date
}): OrderEventData {
  const subtotal = options.items.reduce((sum, line) => sum + line.quantity * line.unitPrice, 0)
  const discount = options.discount ?? 0
  const paidAt = options.paidAt ?? new Date()
  return {
    orderId: options.orderId ?? randomInt(1, 2 ** 47),
    userId: options.userId ?? randomInt(1, 2 ** 47),
    status: options.type === 'order.completed' ? 'PAID' : 'CANCELLED',
    items: options.items,
    subtotal,
    discount,
    total: subtotal - discount,
    userCouponId: options.userCouponId ?? null,
    paidAt: paidAt.toISOString(),
    ...(options.type === 'order.cancelled'
      ? { cancelledAt: (options.cancelledAt ?? new Date()).toISOString() }
      : {}),
  }
}

/**
 * An event as the outbox writer shapes it, without writing a row: for tests that feed consumers directly.
 * Never write outbox rows for orders that do not exist into the shared database: the invariant checks of
 * other tests (docs/invariants.md: no event without its order) read the whole table.
 */
export function orderEnvelope(
  type: OrderEventType,
  data: OrderEventData,
  occurredAt = new Date(),
): EventEnvelope {
  return { eventId: randomUUID(), type, schemaVersion: 1, occurredAt: occurredAt.toISOString(), data }
}

/**
 * Writes one event the way the order verbs do: in a transaction of its own. Returns it with its commit time.
 * Only into a test's own database (createIsolatedDatabase): the row names an order that does not exist.
 */
export async function commitOutboxEvent(db: Db, type: OrderEventType, data: OrderEventData) {
  const envelope: EventEnvelope = await db.transaction((tx) => writeOutboxEvent(tx, type, data, new Date()))
  return { envelope, committedAt: Date.now() }
}

/** `url` with its host and port replaced by a local proxy's, keeping its user, password and path. */
export function throughProxy(url: string, port: number): string {
  const proxied = new URL(url)
  proxied.hostname = '127.0.0.1'
  proxied.port = String(port)
  return proxied.toString()
}

/** A plain connection for a test's own setup and checks (purging, counting, binding). */
export const connectForTest = (url: string): Promise<ChannelModel> => amqp.connect(url)

/**
 * What an end-to-end event test stands on: a database of its own, a TCP proxy to RabbitMQ that the test can
 * cut, deps whose RABBITMQ_URL goes through that proxy, and a topology with names of its own, declared and
 * watched from outside the proxy. `close` undoes all of it.
 */
export async function createEventRig(label: string) {
  const rabbitUrl = testConfig().rabbitmqUrl
  const database = await createIsolatedDatabase(label)
  const proxy = await createTcpProxy(Number(new URL(rabbitUrl).port || 5672), new URL(rabbitUrl).hostname)
  const deps = await createTestDeps({
    DATABASE_URL: database.url,
    RABBITMQ_URL: throughProxy(rabbitUrl, proxy.port),
  })
  const topology = eventTopology(uniqueSuffix(label))
  const admin = await connectForTest(rabbitUrl)
  await declareTopology(admin, topology, deps.logger)
  const observer = await observeExchange(rabbitUrl, topology.exchange, 'order.*')
  return {
    rabbitUrl,
    database,
    proxy,
    deps,
    topology,
    admin,
    observer,
    async close() {
      await observer.close()
      await deleteTopology(admin, topology).catch(() => undefined)
      await admin.close()
      await proxy.close()
      await database.drop(deps.db)
      await deps.close()
    },
  }
}

export type EventRig = Awaited<ReturnType<typeof createEventRig>>
