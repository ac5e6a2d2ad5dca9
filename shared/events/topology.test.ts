import type { ChannelModel, ConsumeMessage, GetMessage } from 'amqplib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger } from '../logger'
import { connectForTest, uniqueSuffix, waitFor } from '../testing/events'
import { testConfig } from '../testing/harness'
import {
  DATA_PLATFORM_DELIVERY_LIMIT,
  type DataPlatformLimits,
  deadLetterQueue,
  declareTopology,
  deleteTopology,
  type EventTopology,
  eventTopology,
  supportsQuorumQueues,
} from './topology'

const url = testConfig().rabbitmqUrl
let connection: ChannelModel
const created: EventTopology[] = []
const warnings: Array<Record<string, unknown>> = []
const logger = createLogger(
  'warn',
  {},
  (line) => warnings.push(JSON.parse(line) as Record<string, unknown>) > 0,
)

const ownTopology = (label: string, limits: Partial<DataPlatformLimits> = {}) => {
  const topology = eventTopology(uniqueSuffix(label), limits)
  created.push(topology)
  return topology
}

/** Publishes with `mandatory` and tells where RabbitMQ routed it by reading each queue. */
async function routeOf(topology: EventTopology, routingKey: string) {
  const channel = await connection.createConfirmChannel()
  let returned = false
  channel.on('return', () => {
    returned = true
  })
  channel.publish(topology.exchange, routingKey, Buffer.from('{}'), { mandatory: true })
  await channel.waitForConfirms()
  const reached: string[] = []
  for (const queue of Object.values(topology.queues)) {
    const message = await channel.get(queue, { noAck: true })
    if (message) reached.push(queue)
  }
  await channel.close()
  return { returned, reached }
}

/** Publishes with confirms, each message's id being its body, and returns the ids in order. */
async function publish(topology: EventTopology, keys: string[]) {
  const channel = await connection.createConfirmChannel()
  const ids = keys.map((key, i) => `${key}#${i}-${Math.random().toString(36).slice(2)}`)
  keys.forEach((key, i) => {
    channel.publish(topology.exchange, key, Buffer.from(ids[i] as string), {
      messageId: ids[i],
      persistent: true,
    })
  })
  await channel.waitForConfirms()
  await channel.close()
  return ids
}

async function drain(queue: string) {
  const channel = await connection.createChannel()
  const messages: GetMessage[] = []
  for (;;) {
    const message = await channel.get(queue, { noAck: true })
    if (message === false) break
    messages.push(message)
  }
  await channel.close()
  return messages
}

/** The first `count` messages of a stream, from its first offset (streams cannot be read with basic.get). */
async function readStream(stream: string, count: number) {
  const channel = await connection.createChannel()
  await channel.prefetch(count)
  const messages: ConsumeMessage[] = []
  await new Promise<void>((resolve, reject) => {
    channel
      .consume(
        stream,
        (message) => {
          if (message === null) return reject(new Error('stream consumer cancelled'))
          messages.push(message)
          if (messages.length === count) resolve()
        },
        { arguments: { 'x-stream-offset': 'first' } },
      )
      .catch(reject)
  })
  await channel.close()
  return messages
}

const idsOf = (messages: Array<{ properties: { messageId?: unknown } }>) =>
  messages.map((m) => String(m.properties.messageId))

beforeAll(async () => {
  connection = await connectForTest(url)
})
afterAll(async () => {
  for (const topology of created) await deleteTopology(connection, topology).catch(() => undefined)
  await connection.close()
})

describe('RabbitMQ topology', () => {
  it('routes order.* to data.platform and each type to its own queue, durable quorum queues with a DLQ each', async () => {
    const topology = ownTopology('routes')
    const { queueType } = await declareTopology(connection, topology, logger)
    // This broker (RabbitMQ 3.10 here) supports quorum queues; the check follows the server's version.
    expect(queueType).toBe(
      supportsQuorumQueues(connection.connection.serverProperties) ? 'quorum' : 'classic',
    )

    // Declaring a queue again with another x-queue-type is refused: proof of the type it has.
    const probe = await connection.createChannel()
    probe.on('error', () => undefined)
    const asClassic = probe.assertQueue(topology.queues.orderCompleted, {
      durable: true,
      arguments: { 'x-queue-type': queueType === 'quorum' ? 'classic' : 'quorum' },
    })
    await expect(asClassic).rejects.toMatchObject({ code: 406 })

    expect(await routeOf(topology, 'order.completed')).toEqual({
      returned: false,
      reached: [topology.queues.dataPlatform, topology.queues.orderCompleted],
    })
    expect(await routeOf(topology, 'order.cancelled')).toEqual({
      returned: false,
      reached: [topology.queues.dataPlatform, topology.queues.orderCancelled],
    })
    expect(await routeOf(topology, 'user.created')).toEqual({ returned: true, reached: [] })

    // A rejected message lands in its own queue's .dlq.
    const channel = await connection.createChannel()
    channel.publish(topology.exchange, 'order.completed', Buffer.from('{}'))
    const fromQueue = async (queue: string) => {
      for (let i = 0; i < 100; i++) {
        const message = await channel.get(queue)
        if (message) return message
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      throw new Error(`nothing in ${queue}`)
    }
    channel.nack(await fromQueue(topology.queues.orderCompleted), false, false)
    channel.ack(await fromQueue(deadLetterQueue(topology.queues.orderCompleted)))
    // data.platform got its copy too; reject it and it lands in data.platform.dlq, not elsewhere.
    channel.nack(await fromQueue(topology.queues.dataPlatform), false, false)
    channel.ack(await fromQueue(deadLetterQueue(topology.queues.dataPlatform)))
    expect((await channel.checkQueue(deadLetterQueue(topology.queues.orderCancelled))).messageCount).toBe(0)
    await channel.close()
  })

  it('is idempotent: declaring it again (as every relay and consumer does on connect) changes nothing', async () => {
    const topology = ownTopology('again')
    await declareTopology(connection, topology, logger)
    await declareTopology(connection, topology, logger)
    await Promise.all([
      declareTopology(connection, topology, logger),
      declareTopology(connection, topology, logger),
    ])
    expect((await routeOf(topology, 'order.completed')).reached).toHaveLength(2)
  })

  it('keeps a queue that exists with other arguments (PRECONDITION_FAILED), warns, and still binds it', async () => {
    const topology = ownTopology('precondition')
    const channel = await connection.createChannel()
    // Made earlier by someone else as a plain classic queue without dead-lettering.
    await channel.assertQueue(topology.queues.dataPlatform, { durable: true })
    await channel.close()
    warnings.length = 0

    await declareTopology(connection, topology, logger)
    expect(warnings).toContainEqual(
      expect.objectContaining({
        message: expect.stringContaining('kept as it is'),
        object: `queue ${topology.queues.dataPlatform}`,
      }),
    )
    expect((await routeOf(topology, 'order.cancelled')).reached).toEqual([
      topology.queues.dataPlatform,
      topology.queues.orderCancelled,
    ])
  })

  it('keeps data.platform bounded: at its length the oldest go to its .dlq (itself bounded); the stream keeps all', async () => {
    const topology = ownTopology('bound', { queueMaxLength: 5 })
    await declareTopology(connection, topology, logger)
    const ids = await publish(
      topology,
      Array.from({ length: 12 }, () => 'order.completed'),
    )

    // data.platform holds the newest 5; the 7 before them were dead-lettered, and the .dlq (bound 5 as
    // well) keeps the newest 5 of those: the 2 oldest are gone from both queues.
    expect(idsOf(await drain(topology.queues.dataPlatform))).toEqual(ids.slice(7))
    const deadLetters = await drain(deadLetterQueue(topology.queues.dataPlatform))
    expect(idsOf(deadLetters)).toEqual(ids.slice(2, 7))
    expect(deadLetters[0]?.properties.headers?.['x-death']).toEqual([
      expect.objectContaining({ queue: topology.queues.dataPlatform, reason: 'maxlen' }),
    ])
    // ...but not from the stream, which is where the platform replays them from.
    expect(idsOf(await readStream(topology.streams.dataPlatform, 12))).toEqual(ids)
    // The statistics' queue is not bounded: it is read by this service, not by someone away.
    expect(idsOf(await drain(topology.queues.orderCompleted))).toEqual(ids)
  })

  it('dead-letters a message that waited in data.platform longer than its age bound', async () => {
    const topology = ownTopology('age', { queueMaxAgeSeconds: 1 })
    await declareTopology(connection, topology, logger)
    const [id] = await publish(topology, ['order.cancelled'])
    const channel = await connection.createChannel()
    await waitFor(
      'the message to expire into the .dlq',
      async () =>
        (await channel.checkQueue(deadLetterQueue(topology.queues.dataPlatform))).messageCount === 1,
    )
    await channel.close()
    const [expired] = await drain(deadLetterQueue(topology.queues.dataPlatform))
    expect(expired?.properties.messageId).toBe(id)
    expect(expired?.properties.headers?.['x-death']).toEqual([expect.objectContaining({ reason: 'expired' })])
    expect(await drain(topology.queues.dataPlatform)).toEqual([])
  })

  it(`dead-letters a message data.platform's consumer handed back more than ${DATA_PLATFORM_DELIVERY_LIMIT} times`, async () => {
    const topology = ownTopology('limit')
    await declareTopology(connection, topology, logger)
    const [id] = await publish(topology, ['order.completed'])
    const channel = await connection.createChannel()
    let deliveries = 0
    for (;;) {
      const message = await channel.get(topology.queues.dataPlatform)
      if (message === false) break
      deliveries++
      channel.nack(message, false, true)
    }
    await channel.close()
    expect(deliveries).toBe(DATA_PLATFORM_DELIVERY_LIMIT + 1)
    const [deadLetter] = await drain(deadLetterQueue(topology.queues.dataPlatform))
    expect(deadLetter?.properties.messageId).toBe(id)
    expect(deadLetter?.properties.headers?.['x-death']).toEqual([
      expect.objectContaining({ reason: 'delivery_limit' }),
    ])
  })

  it('the stream carries the two event types of the contract and nothing else', async () => {
    const topology = ownTopology('stream')
    await declareTopology(connection, topology, logger)
    const ids = await publish(topology, [
      'order.completed',
      'order.refunded',
      'order.cancelled',
      'order.completed',
    ])
    // order.refunded is no event of the contract: data.platform (order.*) takes it, the stream does not.
    expect(idsOf(await readStream(topology.streams.dataPlatform, 3))).toEqual([ids[0], ids[2], ids[3]])
    expect(idsOf(await drain(topology.queues.dataPlatform))).toEqual(ids)
  })
})
