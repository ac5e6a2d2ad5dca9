import type { ChannelModel } from 'amqplib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger } from '../logger'
import { testConfig } from '../testing/harness'
import { connectForTest, uniqueSuffix } from './testing'
import {
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

const ownTopology = (label: string) => {
  const topology = eventTopology(uniqueSuffix(label))
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
})
