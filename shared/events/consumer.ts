import type { Channel, ConfirmChannel, ConsumeMessage } from 'amqplib'
import * as v from 'valibot'
import { createCombiner } from '../combiner'
import type { Deps } from '../deps'
import { isAppError } from '../errors'
import { isDependencyFailure } from '../failures'
import { type BrokerConnection, connectBroker } from './amqp'
import { EventEnvelopeSchema, type ValidEventEnvelope } from './schema'
import { declareTopology, type EventTopology } from './topology'

/** The header that counts how often a message that could not be processed went round again. */
export const RETRY_COUNT_HEADER = 'x-retry-count'

export type ConsumerDeps = Pick<Deps, 'logger' | 'metrics'>

export type EventConsumerOptions = {
  /** The consumer's name: metrics label, broker connection name and dedupe key. */
  name: string
  url: string
  topology: EventTopology
  queues: string[]
  /** Messages delivered and not yet acknowledged, per queue. */
  prefetch?: number
  /** A message that cannot be processed goes round this many more times, then to its dead-letter queue. */
  maxRetries?: number
  retryDelayMs?: number
  /**
   * How long a batch waits for more deliveries before it starts (up to `prefetch` messages): larger
   * batches, fewer transactions, for a consumer whose effect nobody reads within that time.
   */
  batchLingerMs?: number
  /** While MySQL is away, a message is handed back after this delay; it never dead-letters for that. */
  unavailableDelayMs?: number
  /**
   * Applies the events delivered together, in one transaction, each idempotent by eventId (the broker
   * delivers at least once): one outcome per event, in order. A batch that fails is tried again one event
   * at a time, so that one message that cannot be processed never holds back the others.
   */
  handle(events: ValidEventEnvelope[]): Promise<Array<'applied' | 'duplicate'>>
}

type Handled = { outcome: 'applied' | 'duplicate' } | { error: unknown }

/** The message is not an event of the contract: bad JSON, wrong shape, unknown type or version. */
export class InvalidEventError extends Error {
  override name = 'InvalidEventError'
}

export function parseEvent(content: Buffer): ValidEventEnvelope {
  let json: unknown
  try {
    json = JSON.parse(content.toString('utf8'))
  } catch {
    throw new InvalidEventError('body is not JSON')
  }
  const result = v.safeParse(EventEnvelopeSchema, json)
  if (!result.success) {
    const issues = result.issues.map((issue) => `${v.getDotPath(issue) ?? '(root)'}: ${issue.message}`)
    throw new InvalidEventError(`body does not match the event schema: ${issues.join('; ')}`)
  }
  return result.output
}

/** MySQL or Redis down, or a transaction that kept deadlocking: worth waiting for, not dead-lettering. */
const isTemporary = (error: unknown) =>
  isDependencyFailure(error) || (isAppError(error) && error.code === 'SERVICE_UNAVAILABLE')

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function retryCount(message: ConsumeMessage): number {
  const value: unknown = message.properties.headers?.[RETRY_COUNT_HEADER]
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : 0
}

/**
 * The acknowledgements of one channel, sent together: the messages handled in one event-loop turn (a
 * batch's) are acked with one `multiple` ack of the highest of them, when every message delivered before
 * them is settled too; those behind a message still being handled (a retry's pause) are acked one by one,
 * never held back. For a quorum queue each ack frame is one settle command in its log, so a batch of 32
 * costs the broker one instead of 32. Rejections are sent at once, alone.
 */
function createAcks(channel: Channel, settle: (what: () => void) => void) {
  /** Delivery tags delivered and not yet settled, in delivery order (ascending). */
  const open: number[] = []
  const handled = new Set<number>()
  let scheduled = false
  const tag = (deliveryTag: number) => ({ fields: { deliveryTag } }) as unknown as ConsumeMessage
  const forget = (deliveryTag: number) => {
    const at = open.indexOf(deliveryTag)
    if (at >= 0) open.splice(at, 1)
  }
  const flush = () => {
    scheduled = false
    let upTo: number | undefined
    while (open.length > 0 && handled.has(open[0] as number)) {
      upTo = open.shift() as number
      handled.delete(upTo)
    }
    const last = upTo
    if (last !== undefined) settle(() => channel.ack(tag(last), true))
    for (const deliveryTag of handled) {
      forget(deliveryTag)
      settle(() => channel.ack(tag(deliveryTag)))
    }
    handled.clear()
  }
  return {
    delivered(message: ConsumeMessage) {
      open.push(message.fields.deliveryTag)
    },
    ack(message: ConsumeMessage) {
      handled.add(message.fields.deliveryTag)
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    },
    nack(message: ConsumeMessage, requeue: boolean) {
      forget(message.fields.deliveryTag)
      settle(() => channel.nack(message, false, requeue))
    },
    flush,
  }
}

type Acks = ReturnType<typeof createAcks>

/**
 * Consumes events with manual acks and a bounded prefetch, and decides each message's fate:
 *
 * - handled (or a duplicate): ack;
 * - MySQL unavailable: handed back (nack, requeue) after a pause, however long the outage lasts;
 * - cannot be processed (invalid, or the handler throws): republished to the tail of its queue with
 *   x-retry-count + 1, so that the messages behind it go first; after `maxRetries` it is rejected
 *   without requeue and RabbitMQ dead-letters it through commerce.dlx into `<queue>.dlq`.
 *
 * The count travels in a header rather than in quorum queues' x-delivery-count because that count also
 * grows with every outage-time requeue, which would dead-letter good messages during a long outage.
 */
export function createEventConsumer(deps: ConsumerDeps, options: EventConsumerOptions) {
  const { metrics } = deps
  const log = deps.logger.child({ consumer: options.name })
  const prefetch = options.prefetch ?? 32
  const maxRetries = options.maxRetries ?? 5
  const retryDelayMs = options.retryDelayMs ?? 500
  const unavailableDelayMs = options.unavailableDelayMs ?? 1_000
  const inflight = new Set<Promise<void>>()
  let broker: BrokerConnection | undefined
  let consuming: { channel: Channel; tags: string[]; acks: Acks } | undefined
  let stopping = false

  const count = (outcome: string) => metrics.eventsConsumed.inc({ consumer: options.name, outcome })

  const handleOne = async (event: ValidEventEnvelope): Promise<Handled> => {
    try {
      const [outcome] = await options.handle([event])
      return outcome ? { outcome } : { error: new Error('the handler gave no outcome') }
    } catch (error) {
      return { error }
    }
  }
  // Messages delivered while a batch runs are handled together in the next (natural batching, as the
  // orders' group commit): one transaction for many events when they arrive fast, one each when slow.
  const batches = createCombiner<ValidEventEnvelope, Handled>(
    async (events) => {
      try {
        const outcomes = await options.handle(events)
        return outcomes.map((outcome) => ({ outcome }))
      } catch (error) {
        if (events.length === 1) return [{ error }]
        return Promise.all(events.map(handleOne))
      }
    },
    { maxBatch: prefetch, concurrency: 1, lingerMs: options.batchLingerMs ?? 0 },
  )

  // After a reconnect the old channel is gone, and with it the delivery: the broker redelivers it.
  const settle = (what: () => void) => {
    try {
      what()
    } catch (error) {
      log.debug('could not settle a message on a closed channel; it will be redelivered', { error })
    }
  }

  const republish = (confirm: ConfirmChannel, queue: string, message: ConsumeMessage, reason: string) =>
    new Promise<void>((resolve, reject) => {
      const p = message.properties
      confirm.sendToQueue(
        queue,
        message.content,
        {
          persistent: true,
          contentType: p.contentType,
          contentEncoding: p.contentEncoding,
          messageId: p.messageId,
          type: p.type,
          timestamp: p.timestamp,
          correlationId: p.correlationId,
          appId: p.appId,
          headers: {
            ...p.headers,
            [RETRY_COUNT_HEADER]: retryCount(message) + 1,
            'x-last-error': reason.slice(0, 500),
          },
        },
        (error: unknown) => (error ? reject(new Error('republish was not confirmed')) : resolve()),
      )
    })

  const reject = async (
    acks: Acks,
    confirm: ConfirmChannel,
    queue: string,
    message: ConsumeMessage,
    error: unknown,
  ) => {
    const reason = error instanceof Error ? error.message : String(error)
    const retries = retryCount(message)
    const fields = { queue, messageId: message.properties.messageId, retries, error }
    if (retries >= maxRetries) {
      log.error('message dead-lettered after its retries', fields)
      acks.nack(message, false)
      count('dead_lettered')
      return
    }
    log.warn('message could not be processed; retrying', fields)
    await sleep(retryDelayMs)
    await republish(confirm, queue, message, reason)
    acks.ack(message)
    count('retried')
  }

  const handleMessage = async (
    acks: Acks,
    confirm: ConfirmChannel,
    queue: string,
    message: ConsumeMessage,
  ) => {
    let event: ValidEventEnvelope
    try {
      event = parseEvent(message.content)
    } catch (error) {
      await reject(acks, confirm, queue, message, error)
      return
    }
    try {
      const handled = await batches.submit(event)
      if ('error' in handled) throw handled.error
      acks.ack(message)
      count(handled.outcome)
    } catch (error) {
      if (!isTemporary(error)) {
        await reject(acks, confirm, queue, message, error)
        return
      }
      log.warn('a dependency is unavailable; handing the message back', {
        queue,
        eventId: event.eventId,
        error,
      })
      await sleep(unavailableDelayMs)
      acks.nack(message, true)
      count('requeued')
    }
  }

  const track = (work: Promise<void>) => {
    const tracked = work.catch((error: unknown) => {
      // The message stays unacknowledged and comes back after a reconnect.
      log.error('message handling failed', { error })
    })
    inflight.add(tracked)
    void tracked.finally(() => inflight.delete(tracked))
  }

  return {
    async start() {
      broker = await connectBroker({
        url: options.url,
        name: options.name,
        logger: log,
        setup: async (connection) => {
          await declareTopology(connection, options.topology, log)
          const confirm = await connection.createConfirmChannel()
          const channel = await connection.createChannel()
          for (const ch of [confirm, channel]) {
            ch.on('error', (error: Error) => log.warn('consumer channel error', { error }))
            ch.on('close', () => {
              if (!stopping) broker?.reset()
            })
          }
          await channel.prefetch(prefetch)
          const tags: string[] = []
          const acks = createAcks(channel, settle)
          consuming = { channel, tags, acks }
          for (const queue of options.queues) {
            const { consumerTag } = await channel.consume(queue, (message) => {
              if (message === null) {
                // The broker cancelled us (the queue was deleted): reconnecting re-declares it.
                log.warn('consumer cancelled by the broker; reconnecting', { queue })
                broker?.reset()
                return
              }
              acks.delivered(message)
              track(handleMessage(acks, confirm, queue, message))
            })
            tags.push(consumerTag)
          }
          log.info('consuming', { queues: options.queues, prefetch })
        },
      })
    },

    async stop() {
      stopping = true
      // No new deliveries; messages being handled finish and are acked; unacked prefetched ones go back
      // to the queue when the connection closes.
      const current = consuming
      if (current) {
        await Promise.all(current.tags.map((tag) => current.channel.cancel(tag).catch(() => undefined)))
      }
      await Promise.all(inflight)
      current?.acks.flush()
      // Closing the channel waits for the broker to take the acks sent on it; a connection close alone
      // could overtake them and have those messages delivered again.
      await current?.channel.close().catch(() => undefined)
      await broker?.close()
    },
  }
}
