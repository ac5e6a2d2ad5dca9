import { randomUUID } from 'node:crypto'
import type { Channel, ChannelModel, GetMessage } from 'amqplib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger } from '../logger'
import { connectForTest, uniqueSuffix } from '../testing/events'
import { testConfig } from '../testing/harness'
import { migrationNames } from './queue-migration'
import {
  deadLetterQueue,
  declareTopology,
  deleteTopology,
  type EventTopology,
  eventTopology,
  queueBindings,
  queueDeclarations,
} from './topology'

/*
 * The upgrade path (issue 16): a broker that holds messages in the previous release's queues is brought
 * to the new topology by start-up's declareTopology, while events keep being published, without losing one.
 */

const url = testConfig().rabbitmqUrl
let connection: ChannelModel
const created: EventTopology[] = []
const logLines: Array<Record<string, unknown>> = []
const logger = createLogger(
  'info',
  {},
  (line) => logLines.push(JSON.parse(line) as Record<string, unknown>) > 0,
)

beforeAll(async () => {
  connection = await connectForTest(url)
})
afterAll(async () => {
  await connection.close().catch(() => undefined)
  // A connection of its own: a failed test may have left the shared one closed.
  const cleanup = await connectForTest(url)
  for (const topology of created) await deleteTopology(cleanup, topology).catch(() => undefined)
  await cleanup.close()
})

const ownTopology = (label: string) => {
  const topology = eventTopology(uniqueSuffix(label))
  created.push(topology)
  return topology
}

/** The topology exactly as the previous release declared it: no stream, no bounds on data.platform. */
async function declarePreviousTopology(topology: EventTopology) {
  const channel = await connection.createChannel()
  await channel.assertExchange(topology.exchange, 'topic', { durable: true })
  await channel.assertExchange(topology.deadLetterExchange, 'direct', { durable: true })
  for (const { queue, keys } of queueBindings(topology)) {
    const dlq = deadLetterQueue(queue)
    await channel.assertQueue(dlq, { durable: true, arguments: { 'x-queue-type': 'quorum' } })
    await channel.bindQueue(dlq, topology.deadLetterExchange, queue)
    await channel.assertQueue(queue, {
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-dead-letter-exchange': topology.deadLetterExchange,
        'x-dead-letter-routing-key': queue,
      },
    })
    for (const key of keys) await channel.bindQueue(queue, topology.exchange, key)
  }
  await channel.close()
}

/** Publishes like the relay: confirm channel, mandatory, persistent, messageId and type set. */
async function publisherFor(topology: EventTopology) {
  const channel = await connection.createConfirmChannel()
  const published: string[] = []
  const typeOf = new Map<string, string>()
  return {
    published,
    typeOf,
    async publish(count: number) {
      const eventIds: string[] = Array.from({ length: count }, () => randomUUID())
      for (const [i, id] of eventIds.entries()) {
        const type = i % 4 === 3 ? 'order.cancelled' : 'order.completed'
        typeOf.set(id, type)
        channel.publish(topology.exchange, type, Buffer.from(JSON.stringify({ eventId: id, type })), {
          persistent: true,
          mandatory: true,
          contentType: 'application/json',
          messageId: id,
          type,
        })
      }
      await channel.waitForConfirms()
      published.push(...eventIds)
      return eventIds
    },
    close: () => channel.close(),
  }
}

async function drain(channel: Channel, queue: string): Promise<GetMessage[]> {
  const messages: GetMessage[] = []
  for (;;) {
    const message = await channel.get(queue, { noAck: true })
    if (message === false) return messages
    messages.push(message)
  }
}

const ids = (messages: GetMessage[]) => messages.map((m) => String(m.properties.messageId))
const firstOccurrences = (list: string[]) => [...new Set(list)]

/** True if the queue exists with exactly these arguments (a re-declaration with others is refused). */
async function hasArguments(queue: string, args: Record<string, unknown>) {
  const channel = await connection.createChannel()
  channel.on('error', () => undefined)
  try {
    await channel.assertQueue(queue, { durable: true, arguments: args })
    return true
  } catch (error) {
    if ((error as { code?: unknown }).code === 406) return false
    throw error
  } finally {
    await channel.close().catch(() => undefined)
  }
}

async function exists(queue: string) {
  const channel = await connection.createChannel()
  channel.on('error', () => undefined)
  try {
    await channel.checkQueue(queue)
    return true
  } catch {
    return false
  } finally {
    await channel.close().catch(() => undefined)
  }
}

const declarationOf = (topology: EventTopology, name: string) => {
  const declaration = queueDeclarations(topology, 'quorum').find((d) => d.name === name)
  if (declaration === undefined) throw new Error(`no declaration for ${name}`)
  return declaration
}

describe('upgrading a broker that holds the previous topology', () => {
  it('start-up migrates data.platform and its .dlq to their bounds while events keep flowing; none is lost', async () => {
    const topology = ownTopology('upgrade')
    const platform = topology.queues.dataPlatform
    const platformDlq = deadLetterQueue(platform)
    await declarePreviousTopology(topology)
    const publisher = await publisherFor(topology)
    const before = await publisher.publish(300)
    // Five of them were rejected by the platform earlier: they wait in its .dlq.
    const channel = await connection.createChannel()
    const rejected: string[] = []
    for (let i = 0; i < 5; i++) {
      const message = await channel.get(platform)
      if (message === false) throw new Error('data.platform is empty')
      rejected.push(String(message.properties.messageId))
      channel.nack(message, false, false)
    }
    expect((await channel.checkQueue(platformDlq)).messageCount).toBe(5)

    // Relays keep publishing throughout, and two processes start (and migrate) at once.
    let publishing = true
    // About 250 events a second, a busy shop's rate; the pause only keeps the load down.
    const background = (async () => {
      while (publishing) {
        await publisher.publish(5)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    })()
    const second = await connectForTest(url)
    const [report, otherReport] = await Promise.all([
      declareTopology(connection, topology, logger),
      declareTopology(second, topology, logger),
    ])
    await second.close()
    publishing = false
    await background
    await publisher.publish(10)
    await publisher.close()

    const migrated = [...report.migrated, ...otherReport.migrated].map((m) => m.queue).sort()
    expect(migrated).toEqual([platform, platformDlq].sort())
    expect([...report.kept, ...otherReport.kept]).toEqual([])
    // In the new shape, with its bounds; no longer in the old one.
    const platformDeclaration = declarationOf(topology, platform)
    expect(await hasArguments(platform, platformDeclaration.arguments)).toBe(true)
    expect(await hasArguments(platform, platformDeclaration.previousArguments ?? {})).toBe(false)
    expect(await hasArguments(platformDlq, declarationOf(topology, platformDlq).arguments)).toBe(true)
    // Nothing of the migration is left behind.
    for (const name of [platform, platformDlq]) expect(await exists(migrationNames(name).holding)).toBe(false)

    // Every event is in data.platform: those waiting before, and every one published since.
    const inQueue = await drain(channel, platform)
    const rejectedSet = new Set(rejected)
    const expected = publisher.published.filter((id) => !rejectedSet.has(id))
    expect(new Set(ids(inQueue))).toEqual(new Set(expected))
    // Duplicates only from the instants of switching bindings; they dedupe by eventId.
    expect(inQueue.length - expected.length).toBeLessThan(50)
    // The messages that waited keep their order, their routing keys and their properties.
    const waiting = new Set(before)
    expect(firstOccurrences(ids(inQueue)).filter((id) => waiting.has(id))).toEqual(
      before.filter((id) => !rejectedSet.has(id)),
    )
    for (const message of inQueue) {
      const body = JSON.parse(message.content.toString()) as { eventId: string; type: string }
      expect(message.fields.routingKey).toBe(body.type)
      expect(message.properties).toMatchObject({
        messageId: body.eventId,
        type: body.type,
        contentType: 'application/json',
        deliveryMode: 2,
      })
    }
    // The dead letters are kept, with their history.
    const deadLetters = await drain(channel, platformDlq)
    expect(ids(deadLetters)).toEqual(rejected)
    expect(deadLetters[0]?.properties.headers?.['x-death']).toEqual([
      expect.objectContaining({ queue: platform, reason: 'rejected' }),
    ])
    // The statistics' queue was already in shape: left alone, with every event it was sent.
    const completed = await drain(channel, topology.queues.orderCompleted)
    expect(ids(completed)).toEqual(
      publisher.published.filter((id) => publisher.typeOf.get(id) === 'order.completed'),
    )
    await channel.close()
  })

  it('leaves a queue that has consumers as it is (nothing moved), and migrates it once they are gone', async () => {
    const topology = ownTopology('consumers')
    const platform = topology.queues.dataPlatform
    await declarePreviousTopology(topology)
    const publisher = await publisherFor(topology)
    const sent = await publisher.publish(20)
    const consumerChannel = await connection.createChannel()
    await consumerChannel.prefetch(1)
    const { consumerTag } = await consumerChannel.consume(platform, () => undefined)
    logLines.length = 0

    const blocked = await declareTopology(connection, topology, logger)
    expect(blocked.kept).toEqual([platform])
    expect(logLines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        object: `queue ${platform}`,
        reason: expect.stringContaining('consumer'),
      }),
    )
    expect(await hasArguments(platform, declarationOf(topology, platform).previousArguments ?? {})).toBe(true)
    // Still bound: events keep reaching it.
    await publisher.publish(1)

    await consumerChannel.cancel(consumerTag)
    await consumerChannel.close()
    const report = await declareTopology(connection, topology, logger)
    expect(report.migrated.map((m) => m.queue)).toEqual([platform])
    const channel = await connection.createChannel()
    expect(new Set(ids(await drain(channel, platform)))).toEqual(new Set(publisher.published))
    expect(sent).toHaveLength(20)
    await channel.close()
    await publisher.close()
  })

  it('resumes a migration cut short after the old queue was deleted', async () => {
    const topology = ownTopology('resume')
    const platform = topology.queues.dataPlatform
    await declarePreviousTopology(topology)
    const publisher = await publisherFor(topology)
    await publisher.publish(10)
    // What a migration leaves when its process dies between steps 2 and 3 (see queue-migration.ts).
    const { holding, router } = migrationNames(platform)
    const channel = await connection.createChannel()
    await channel.assertQueue(holding, { durable: true, arguments: { 'x-queue-type': 'classic' } })
    await channel.bindQueue(holding, topology.exchange, 'order.*')
    await channel.unbindQueue(platform, topology.exchange, 'order.*')
    await channel.assertExchange(router, 'fanout', { durable: true })
    await channel.bindQueue(holding, router, '')
    for (const message of await drain(channel, platform)) {
      channel.publish(router, message.fields.routingKey, message.content, message.properties)
    }
    await channel.deleteQueue(platform)
    await publisher.publish(5)

    // A plain start: data.platform does not exist, so only the holding queue tells of the migration.
    // (Its .dlq, still in the previous shape, is migrated on the way.)
    const report = await declareTopology(connection, topology, logger)
    expect(report.migrated.map((m) => m.queue)).toEqual([deadLetterQueue(platform), platform])
    const inQueue = await drain(channel, platform)
    expect(ids(inQueue)).toEqual(publisher.published)
    expect(inQueue.map((m) => m.fields.routingKey)).toEqual(
      publisher.published.map((id) => publisher.typeOf.get(id)),
    )
    expect(await exists(holding)).toBe(false)
    await channel.close()
    await publisher.close()
  })

  it('leaves a queue of another shape to `npm run events:upgrade`, which migrates it', async () => {
    const topology = ownTopology('handmade')
    const platform = topology.queues.dataPlatform
    // Made by hand long ago: a classic queue without dead-lettering, holding messages.
    const channel = await connection.createChannel()
    await channel.assertExchange(topology.exchange, 'topic', { durable: true })
    await channel.assertQueue(platform, { durable: true })
    await channel.bindQueue(platform, topology.exchange, 'order.*')
    const publisher = await publisherFor(topology)
    await publisher.publish(10)

    const atStart = await declareTopology(connection, topology, logger)
    expect(atStart.kept).toEqual([platform])
    const upgrade = await declareTopology(connection, topology, logger, { migrate: 'any' })
    expect(upgrade.migrated).toEqual([{ queue: platform, moved: 10 }])
    expect(await hasArguments(platform, declarationOf(topology, platform).arguments)).toBe(true)
    expect(ids(await drain(channel, platform))).toEqual(publisher.published)
    await channel.close()
    await publisher.close()
  })
})
