import type { Channel, ChannelModel } from 'amqplib'
import type { Logger } from '../logger'
import type { OrderEventType } from './outbox'

/**
 * The RabbitMQ names of docs/events.md. `suffix` gives tests (and side-by-side environments on one broker) a
 * topology of their own, so that they never consume the real queues' messages.
 *
 * `order.cancelled` is a queue of ours beside the contract's two: the statistics consumer must subtract
 * cancellations, and the contract binds `order.completed` to that routing key only (see docs/events.md).
 */
export function eventTopology(suffix = '') {
  return {
    exchange: `commerce.events${suffix}`,
    deadLetterExchange: `commerce.dlx${suffix}`,
    queues: {
      dataPlatform: `data.platform${suffix}`,
      orderCompleted: `order.completed${suffix}`,
      orderCancelled: `order.cancelled${suffix}`,
    },
  }
}

export type EventTopology = ReturnType<typeof eventTopology>

export const deadLetterQueue = (queue: string) => `${queue}.dlq`

export const ORDER_EVENT_TYPES = ['order.completed', 'order.cancelled'] as const satisfies OrderEventType[]

/** Each queue with the routing keys it is bound to on the topic exchange. */
export function queueBindings(topology: EventTopology): Array<{ queue: string; keys: string[] }> {
  return [
    { queue: topology.queues.dataPlatform, keys: ['order.*'] },
    { queue: topology.queues.orderCompleted, keys: ['order.completed'] },
    { queue: topology.queues.orderCancelled, keys: ['order.cancelled'] },
  ]
}

const PRECONDITION_FAILED = 406

/** Quorum queues (replicated, and what RabbitMQ recommends for durable queues) exist from RabbitMQ 3.8 on. */
export function supportsQuorumQueues(serverProperties: { product?: unknown; version?: unknown }): boolean {
  if (serverProperties.product !== 'RabbitMQ' || typeof serverProperties.version !== 'string') return false
  const [major = 0, minor = 0] = serverProperties.version.split('.').map(Number)
  return major > 3 || (major === 3 && minor >= 8)
}

const isPreconditionFailed = (error: unknown) =>
  typeof error === 'object' && error !== null && (error as { code?: unknown }).code === PRECONDITION_FAILED

/**
 * Declares the exchange, queues, bindings and dead-lettering; safe to run on every (re)connect, from
 * every process, at once.
 *
 * A queue that already exists with other arguments (say, a classic queue made before quorum queues were
 * used here, or by an operator by hand) makes RabbitMQ refuse the declaration with 406
 * PRECONDITION_FAILED and close the channel. That queue is kept as it is, with a warning: changing a
 * queue's type means deleting it with its messages, which start-up code must never do on its own. The
 * warning says how to migrate. Bindings are still declared, so events keep flowing to it.
 */
export async function declareTopology(
  connection: ChannelModel,
  topology: EventTopology,
  logger: Logger,
): Promise<{ queueType: 'quorum' | 'classic' }> {
  const queueType = supportsQuorumQueues(connection.connection.serverProperties) ? 'quorum' : 'classic'
  let channel = await openChannel(connection)

  // After a 406 the broker has closed the channel: continue on a fresh one.
  const declare = async (
    what: string,
    attempt: (ch: Channel) => Promise<unknown>,
    check: (ch: Channel) => Promise<unknown>,
  ) => {
    try {
      await attempt(channel)
    } catch (error) {
      if (!isPreconditionFailed(error)) throw error
      channel = await openChannel(connection)
      await check(channel)
      logger.warn('RabbitMQ object exists with other settings; kept as it is', {
        object: what,
        wanted: queueType,
        howToMigrate:
          'drain it, delete it (rabbitmqctl delete_queue NAME) and restart a relay or consumer to re-declare it',
      })
    }
  }

  const queueArguments = (deadLetterRoutingKey?: string) => ({
    'x-queue-type': queueType,
    ...(deadLetterRoutingKey === undefined
      ? {}
      : {
          'x-dead-letter-exchange': topology.deadLetterExchange,
          'x-dead-letter-routing-key': deadLetterRoutingKey,
        }),
  })

  try {
    await declare(
      `exchange ${topology.exchange}`,
      (ch) => ch.assertExchange(topology.exchange, 'topic', { durable: true }),
      (ch) => ch.checkExchange(topology.exchange),
    )
    await declare(
      `exchange ${topology.deadLetterExchange}`,
      (ch) => ch.assertExchange(topology.deadLetterExchange, 'direct', { durable: true }),
      (ch) => ch.checkExchange(topology.deadLetterExchange),
    )
    for (const { queue, keys } of queueBindings(topology)) {
      const dlq = deadLetterQueue(queue)
      await declare(
        `queue ${dlq}`,
        (ch) => ch.assertQueue(dlq, { durable: true, arguments: queueArguments() }),
        (ch) => ch.checkQueue(dlq),
      )
      await channel.bindQueue(dlq, topology.deadLetterExchange, queue)
      // Dead letters are routed by the name of the queue they left, so each queue's land in its own .dlq.
      await declare(
        `queue ${queue}`,
        (ch) => ch.assertQueue(queue, { durable: true, arguments: queueArguments(queue) }),
        (ch) => ch.checkQueue(queue),
      )
      for (const key of keys) await channel.bindQueue(queue, topology.exchange, key)
    }
  } finally {
    await channel.close().catch(() => undefined)
  }
  return { queueType }
}

async function openChannel(connection: ChannelModel): Promise<Channel> {
  const channel = await connection.createChannel()
  // A 406 arrives both as the rejected promise and as an 'error' event; the promise is what we act on.
  channel.on('error', () => undefined)
  return channel
}

/** Removes a topology and its messages: for tests' own suffixed topologies, never for the real one. */
export async function deleteTopology(connection: ChannelModel, topology: EventTopology): Promise<void> {
  const channel = await openChannel(connection)
  try {
    for (const { queue } of queueBindings(topology)) {
      await channel.deleteQueue(queue)
      await channel.deleteQueue(deadLetterQueue(queue))
    }
    await channel.deleteExchange(topology.exchange)
    await channel.deleteExchange(topology.deadLetterExchange)
  } finally {
    await channel.close().catch(() => undefined)
  }
}
