import type { ConfirmChannel } from 'amqplib'
import type { Logger } from '../logger'
import { type BrokerConnection, connectBroker } from './amqp'
import { declareTopology, type EventTopology } from './topology'

/** No queue is bound for the routing key: the broker returned the message (basic.return). */
export class UnroutableError extends Error {
  override name = 'UnroutableError'
}

/** Not connected to RabbitMQ right now; recovery is reconnecting in the background. */
export class BrokerUnavailableError extends Error {
  override name = 'BrokerUnavailableError'
}

/** A confirm that takes longer than this is treated as lost: the publish is retried (consumers dedupe). */
const CONFIRM_TIMEOUT_MS = 10_000

export type OutgoingEvent = {
  eventId: string
  /** The routing key, e.g. order.completed. */
  type: string
  /** The message body: the outbox row's JSON text, byte for byte. */
  body: string
  occurredAt: Date
}

export type EventPublisher = {
  readonly connected: boolean
  /** Resolves once the broker has confirmed the message to at least one queue. */
  publish(event: OutgoingEvent): Promise<void>
  close(): Promise<void>
}

/**
 * Publishes events on commerce.events through a confirm channel with `mandatory`: a message is done only
 * when RabbitMQ has written it to a queue (ack), and a message that no queue takes comes back as a
 * basic.return before its ack, which makes it an UnroutableError instead of a silent loss.
 */
export async function createEventPublisher(options: {
  url: string
  topology: EventTopology
  logger: Logger
  name?: string
  onConnect?: () => void
}): Promise<EventPublisher> {
  const { topology, logger } = options
  let channel: ConfirmChannel | undefined
  // Message ids the broker returned on the current channel, awaiting their confirm.
  const returned = new Set<string>()
  let broker: BrokerConnection | undefined

  broker = await connectBroker({
    url: options.url,
    name: options.name ?? 'event-publisher',
    logger,
    setup: async (connection) => {
      await declareTopology(connection, topology, logger)
      const ch = await connection.createConfirmChannel()
      ch.on('error', (error: Error) => logger.warn('publish channel error', { error }))
      ch.on('return', (message) => {
        const messageId: unknown = message.properties.messageId
        if (typeof messageId === 'string') returned.add(messageId)
      })
      ch.on('close', () => {
        if (channel !== ch) return
        channel = undefined
        // A channel can close on its own (a channel-level error); a fresh connection rebuilds everything.
        broker?.reset()
      })
      returned.clear()
      channel = ch
    },
    onConnect: options.onConnect,
    onDisconnect: () => {
      channel = undefined
    },
  })

  const publish = (event: OutgoingEvent) =>
    new Promise<void>((resolve, reject) => {
      const ch = channel
      if (ch === undefined) {
        reject(new BrokerUnavailableError('not connected to RabbitMQ'))
        return
      }
      const timer = setTimeout(() => {
        reject(new Error(`no publisher confirm within ${CONFIRM_TIMEOUT_MS} ms`))
      }, CONFIRM_TIMEOUT_MS)
      ch.publish(
        topology.exchange,
        event.type,
        Buffer.from(event.body),
        {
          persistent: true,
          mandatory: true,
          contentType: 'application/json',
          messageId: event.eventId,
          type: event.type,
          // AMQP timestamps are whole seconds; the body's occurredAt has the milliseconds.
          timestamp: Math.floor(event.occurredAt.getTime() / 1000),
        },
        (error: unknown) => {
          clearTimeout(timer)
          const wasReturned = returned.delete(event.eventId)
          if (error) reject(error instanceof Error ? error : new Error(`publish nacked: ${String(error)}`))
          else if (wasReturned) reject(new UnroutableError(`no queue is bound for ${event.type}`))
          else resolve()
        },
      )
    })

  return {
    get connected() {
      return channel !== undefined && broker?.connected === true
    },
    publish,
    async close() {
      await broker?.close()
    },
  }
}
