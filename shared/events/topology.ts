import type { Channel, ChannelModel } from 'amqplib'
import type { Logger } from '../logger'
import type { OrderEventType } from './outbox'
import {
  declareQueue,
  type MigrationOutcome,
  migrationNames,
  openChannel,
  withTopologyLock,
} from './queue-migration'

/**
 * The bounds of what the data platform is kept: the stream's retention and the data.platform queue's
 * length and age. Every process that declares the topology must use the same values (RabbitMQ refuses a
 * re-declaration with other arguments); the environment sets them (shared/config.ts).
 */
export type DataPlatformLimits = {
  /** Stream retention by age: segments whose messages are all older are deleted. */
  streamMaxAgeSeconds: number
  /** Stream retention by size: the oldest segments go once the stream is larger. */
  streamMaxBytes: number
  /** Messages in data.platform beyond this push the oldest out to data.platform.dlq. */
  queueMaxLength: number
  /** Messages waiting longer than this in data.platform are moved to data.platform.dlq. */
  queueMaxAgeSeconds: number
}

/** Documented in docs/events.md and the README's configuration table. */
export const DATA_PLATFORM_DEFAULTS: DataPlatformLimits = {
  streamMaxAgeSeconds: 7 * 24 * 3600,
  streamMaxBytes: 10 * 1024 ** 3,
  queueMaxLength: 100_000,
  queueMaxAgeSeconds: 3 * 24 * 3600,
}

/**
 * How often data.platform's consumer may hand one message back (a nack with requeue, or dying with it
 * unacknowledged); one more and RabbitMQ dead-letters it. A message the platform's loader keeps failing
 * or crashing on cannot circle for ever.
 */
export const DATA_PLATFORM_DELIVERY_LIMIT = 20

/**
 * Retention removes whole segments, never the newest one; smaller segments make the age bound closer to
 * exact at the cost of more files (RabbitMQ's default is 500 MB).
 */
export const STREAM_SEGMENT_BYTES = 100_000_000

/**
 * The RabbitMQ names of docs/events.md. `suffix` gives tests (and side-by-side environments on one broker) a
 * topology of their own, so that they never consume the real queues' messages.
 *
 * `order.cancelled` is a queue of ours beside the contract's two: the statistics consumer must subtract
 * cancellations, and the contract binds `order.completed` to that routing key only (see docs/events.md).
 * `data.platform.stream` is the data platform's replayable record of every event (docs/events.md).
 */
export function eventTopology(suffix = '', limits: Partial<DataPlatformLimits> = {}) {
  return {
    exchange: `commerce.events${suffix}`,
    deadLetterExchange: `commerce.dlx${suffix}`,
    queues: {
      dataPlatform: `data.platform${suffix}`,
      orderCompleted: `order.completed${suffix}`,
      orderCancelled: `order.cancelled${suffix}`,
    },
    streams: {
      dataPlatform: `data.platform.stream${suffix}`,
    },
    /** An exclusive queue held while a queue is migrated, so that only one process migrates at a time. */
    upgradeLock: `commerce.topology-upgrade${suffix}`,
    limits: { ...DATA_PLATFORM_DEFAULTS, ...limits },
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

export type QueueType = 'quorum' | 'classic'
export type Binding = { exchange: string; key: string }
export type QueueDeclaration = {
  name: string
  arguments: Record<string, unknown>
  /**
   * The arguments the previous release declared this queue with, where they differ: a queue still in
   * that shape is migrated at start-up (a queue in any other shape is left to `npm run events:upgrade`).
   */
  previousArguments?: Record<string, unknown>
  bindings: Binding[]
}

/** Every queue with the exact arguments it is declared with, dead-letter queues first. */
export function queueDeclarations(topology: EventTopology, queueType: QueueType): QueueDeclaration[] {
  const { limits } = topology
  const deadLettered = (queue: string) => ({
    'x-queue-type': queueType,
    'x-dead-letter-exchange': topology.deadLetterExchange,
    'x-dead-letter-routing-key': queue,
  })
  return queueBindings(topology).flatMap(({ queue, keys }) => {
    const bindings = keys.map((key) => ({ exchange: topology.exchange, key }))
    const dlq = deadLetterQueue(queue)
    const dlqBinding = [{ exchange: topology.deadLetterExchange, key: queue }]
    if (queue !== topology.queues.dataPlatform) {
      return [
        { name: dlq, arguments: { 'x-queue-type': queueType }, bindings: dlqBinding },
        { name: queue, arguments: deadLettered(queue), bindings },
      ]
    }
    // The data platform reads at its own pace, so its queue and dead-letter queue are bounded: at the
    // bound the oldest message leaves (drop-head), data.platform's into its .dlq, the .dlq's for good.
    // Both are still in the stream, which keeps every event longer than the queue's age bound.
    return [
      {
        name: dlq,
        arguments: {
          'x-queue-type': queueType,
          'x-max-length': limits.queueMaxLength,
          'x-overflow': 'drop-head',
        },
        previousArguments: { 'x-queue-type': queueType },
        bindings: dlqBinding,
      },
      {
        name: queue,
        arguments: {
          ...deadLettered(queue),
          'x-max-length': limits.queueMaxLength,
          'x-overflow': 'drop-head',
          'x-message-ttl': limits.queueMaxAgeSeconds * 1000,
          // Classic queues have no delivery limit; they are only used on brokers older than 3.8.
          ...(queueType === 'quorum' ? { 'x-delivery-limit': DATA_PLATFORM_DELIVERY_LIMIT } : {}),
        },
        previousArguments: deadLettered(queue),
        bindings,
      },
    ]
  })
}

/** The data platform's stream: every event of the contract (both routing keys, nothing else), retained. */
export function streamDeclaration(topology: EventTopology) {
  return {
    name: topology.streams.dataPlatform,
    arguments: {
      'x-queue-type': 'stream',
      'x-max-age': `${topology.limits.streamMaxAgeSeconds}s`,
      'x-max-length-bytes': topology.limits.streamMaxBytes,
      'x-stream-max-segment-size-bytes': STREAM_SEGMENT_BYTES,
    },
    bindings: ORDER_EVENT_TYPES.map((key) => ({ exchange: topology.exchange, key })),
  }
}

const PRECONDITION_FAILED = 406

const serverVersion = (serverProperties: { product?: unknown; version?: unknown }) => {
  if (serverProperties.product !== 'RabbitMQ' || typeof serverProperties.version !== 'string') return [0, 0]
  const [major = 0, minor = 0] = serverProperties.version.split('.').map(Number)
  return [major, minor] as const
}

const atLeast = (
  serverProperties: { product?: unknown; version?: unknown },
  major: number,
  minor: number,
) => {
  const [actualMajor = 0, actualMinor = 0] = serverVersion(serverProperties)
  return actualMajor > major || (actualMajor === major && actualMinor >= minor)
}

/** Quorum queues (replicated, and what RabbitMQ recommends for durable queues) exist from RabbitMQ 3.8 on. */
export const supportsQuorumQueues = (serverProperties: { product?: unknown; version?: unknown }) =>
  atLeast(serverProperties, 3, 8)

/** Streams exist from RabbitMQ 3.9 on; consumed over AMQP 0-9-1 they need no plugin. */
export const supportsStreams = (serverProperties: { product?: unknown; version?: unknown }) =>
  atLeast(serverProperties, 3, 9)

export const isPreconditionFailed = (error: unknown) =>
  typeof error === 'object' && error !== null && (error as { code?: unknown }).code === PRECONDITION_FAILED

/** What declareTopology did, for the upgrade command and for tests. */
export type TopologyReport = {
  queueType: QueueType
  stream: 'declared' | 'kept' | 'unsupported'
  /** Queues migrated to their new arguments, with the number of messages moved. */
  migrated: Array<{ queue: string; moved: number }>
  /** Queues that exist with other arguments and were kept as they are (see the warnings logged). */
  kept: string[]
  /** Migrations that failed part-way (logged as errors); the next declaration resumes them. */
  interrupted: string[]
}

export type DeclareOptions = {
  /**
   * Which existing queues with other arguments are migrated: `previous` (start-up) only those in the
   * shape the previous release declared; `any` (`npm run events:upgrade`) every one.
   */
  migrate?: 'previous' | 'any'
}

/**
 * Declares the exchanges, queues, stream, bindings and dead-lettering; safe to run on every
 * (re)connect, from every process, at once.
 *
 * A queue that already exists with other arguments makes RabbitMQ refuse the declaration with 406
 * PRECONDITION_FAILED and close the channel; arguments cannot be changed in place. If it is in the
 * previous release's shape (or `migrate: 'any'`), it is migrated to the new arguments without losing a
 * message (queue-migration.ts). Otherwise (a queue made by hand, say) it is kept as it is, with a
 * warning that says how to migrate, and its bindings are still declared, so events keep flowing to it.
 */
export async function declareTopology(
  connection: ChannelModel,
  topology: EventTopology,
  logger: Logger,
  options: DeclareOptions = {},
): Promise<TopologyReport> {
  const serverProperties = connection.connection.serverProperties
  const queueType: QueueType = supportsQuorumQueues(serverProperties) ? 'quorum' : 'classic'
  const report: TopologyReport = { queueType, stream: 'unsupported', migrated: [], kept: [], interrupted: [] }
  let channel = await openChannel(connection)

  /** Runs `attempt`; after a 406 the broker has closed the channel, so it continues on a fresh one. */
  const tryDeclare = async (attempt: (ch: Channel) => Promise<unknown>): Promise<boolean> => {
    try {
      await attempt(channel)
      return true
    } catch (error) {
      if (!isPreconditionFailed(error)) throw error
      channel = await openChannel(connection)
      return false
    }
  }

  const keep = (what: string, fields: Record<string, unknown>) => {
    logger.warn('RabbitMQ object exists with other settings; kept as it is', { object: what, ...fields })
  }

  try {
    if (!(await tryDeclare((ch) => ch.assertExchange(topology.exchange, 'topic', { durable: true })))) {
      await channel.checkExchange(topology.exchange)
      keep(`exchange ${topology.exchange}`, {})
    }
    if (
      !(await tryDeclare((ch) => ch.assertExchange(topology.deadLetterExchange, 'direct', { durable: true })))
    ) {
      await channel.checkExchange(topology.deadLetterExchange)
      keep(`exchange ${topology.deadLetterExchange}`, {})
    }

    // Under the lock: a migration deletes and re-creates a queue, which no other declaration may race.
    await withTopologyLock(connection, topology.upgradeLock, async () => {
      for (const declaration of queueDeclarations(topology, queueType)) {
        const outcome: MigrationOutcome = await declareQueue(connection, declaration, logger, {
          migrateAnyShape: options.migrate === 'any',
        })
        if (outcome.status === 'migrated')
          report.migrated.push({ queue: declaration.name, moved: outcome.moved })
        if (outcome.status === 'kept') {
          report.kept.push(declaration.name)
          keep(`queue ${declaration.name}`, {
            wanted: declaration.arguments,
            reason: outcome.reason,
            howToMigrate: outcome.howToMigrate,
          })
        }
        // An interrupted migration is resumed by the next declaration; its holding queue has the bindings.
        if (outcome.status === 'interrupted') {
          report.interrupted.push(declaration.name)
          continue
        }
        for (const { exchange, key } of declaration.bindings)
          await channel.bindQueue(declaration.name, exchange, key)
      }
    })

    if (supportsStreams(serverProperties)) {
      const stream = streamDeclaration(topology)
      if (
        await tryDeclare((ch) => ch.assertQueue(stream.name, { durable: true, arguments: stream.arguments }))
      ) {
        report.stream = 'declared'
      } else {
        await channel.checkQueue(stream.name)
        report.stream = 'kept'
        report.kept.push(stream.name)
        // A stream's history cannot be moved to a new stream with the same offsets. Its retention is
        // changed in place by a policy instead: for streams, a policy's retention wins over the arguments.
        keep(`stream ${stream.name}`, {
          wanted: stream.arguments,
          howToChange: `rabbitmqctl set_policy data-platform-retention '^${escapeRegExp(stream.name)}$' '{"max-age":"${stream.arguments['x-max-age']}","max-length-bytes":${stream.arguments['x-max-length-bytes']}}' --apply-to queues`,
        })
      }
      for (const { exchange, key } of stream.bindings) await channel.bindQueue(stream.name, exchange, key)
    } else {
      logger.warn('RabbitMQ older than 3.9 has no streams; the data platform stream is not declared', {
        version: serverProperties.version,
      })
    }
  } finally {
    await channel.close().catch(() => undefined)
  }
  return report
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** Removes a topology and its messages: for tests' own suffixed topologies, never for the real one. */
export async function deleteTopology(connection: ChannelModel, topology: EventTopology): Promise<void> {
  const channel = await openChannel(connection)
  try {
    // Deleting what does not exist is not an error in RabbitMQ, so leftovers of a migration go too.
    for (const { name } of queueDeclarations(topology, 'quorum')) {
      const { holding, router } = migrationNames(name)
      await channel.deleteQueue(name)
      await channel.deleteQueue(holding)
      await channel.deleteExchange(router)
    }
    await channel.deleteQueue(topology.streams.dataPlatform)
    await channel.deleteExchange(topology.exchange)
    await channel.deleteExchange(topology.deadLetterExchange)
  } finally {
    await channel.close().catch(() => undefined)
  }
}
