import type { Channel, ChannelModel, GetMessage, Options } from 'amqplib'
import type { Logger } from '../logger'
import type { EventTopology, QueueDeclaration } from './topology'

/*
 * RabbitMQ cannot change a queue's arguments (type, bounds, dead-lettering) in place: the queue has to be
 * deleted and declared again, and its name is part of the contract. This moves a queue to new arguments
 * without losing a message, while events keep being published:
 *
 *   1. a holding queue takes the queue's bindings (from here on, new events land there too);
 *   2. the old queue is unbound, its messages are moved to the holding queue, and it is deleted once empty;
 *   3. the queue is declared with its new arguments and the holding queue's messages are moved into it;
 *   4. the queue takes its bindings back, the holding queue gives them up and is drained and deleted.
 *
 * Every message is acknowledged on its way out only after the broker has confirmed it in its new queue,
 * so a crash leaves each one somewhere (perhaps twice: consumers dedupe by eventId). Each step starts
 * from what it finds, so a migration cut short resumes on the next declaration. Messages keep their
 * routing key and properties (through a fanout exchange bound to the target alone); events published
 * during the migration may arrive ahead of the older ones it moves.
 */

export const migrationNames = (queue: string) => ({
  /** Classic, so that it can be deleted with if-empty (quorum queues refuse that flag). */
  holding: `${queue}.upgrade`,
  /** A fanout exchange bound to the one queue messages are moved into; it keeps their routing keys. */
  router: `${queue}.upgrade-router`,
})

export type MigrationOutcome =
  | { status: 'current' }
  | { status: 'migrated'; moved: number }
  | { status: 'kept'; reason: string; howToMigrate: string }
  /** Started and not finished; the holding queue has the bindings, so no event is lost meanwhile. */
  | { status: 'interrupted' }

const NOT_FOUND = 404
const RESOURCE_LOCKED = 405
const PRECONDITION_FAILED = 406
const LOCK_WAIT_MS = 60_000
const LOCK_POLL_MS = 200

const codeOf = (error: unknown) =>
  typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined

export async function openChannel(connection: ChannelModel): Promise<Channel> {
  const channel = await connection.createChannel()
  // A channel error arrives both as the rejected promise and as an 'error' event; the promise is what we act on.
  channel.on('error', () => undefined)
  return channel
}

/** Runs one operation on a channel of its own, which a channel error (404, 406) may close. */
async function onOwnChannel<T>(connection: ChannelModel, operation: (channel: Channel) => Promise<T>) {
  const channel = await openChannel(connection)
  try {
    return await operation(channel)
  } finally {
    await channel.close().catch(() => undefined)
  }
}

async function queueExists(connection: ChannelModel, queue: string): Promise<boolean> {
  try {
    await onOwnChannel(connection, (channel) => channel.checkQueue(queue))
    return true
  } catch (error) {
    if (codeOf(error) === NOT_FOUND) return false
    throw error
  }
}

/** Declares the queue (creating it if missing); false when it exists with other arguments. */
async function declaredAs(connection: ChannelModel, queue: string, args: Record<string, unknown>) {
  try {
    await onOwnChannel(connection, (channel) =>
      channel.assertQueue(queue, { durable: true, arguments: args }),
    )
    return true
  } catch (error) {
    if (codeOf(error) === PRECONDITION_FAILED) return false
    throw error
  }
}

/**
 * Makes sure `declaration.name` exists with its arguments, migrating it when it is in the previous
 * release's shape (or in any other shape, with `migrateAnyShape`), or when a migration was cut short.
 */
export async function migrateQueue(
  connection: ChannelModel,
  topology: EventTopology,
  declaration: QueueDeclaration,
  logger: Logger,
  options: { migrateAnyShape: boolean },
): Promise<MigrationOutcome> {
  const { name } = declaration
  const migratable = declaration.previousArguments !== undefined || options.migrateAnyShape
  const unfinished = migratable && (await queueExists(connection, migrationNames(name).holding))
  if (!unfinished) {
    if (await declaredAs(connection, name, declaration.arguments)) return { status: 'current' }
    const previousShape =
      declaration.previousArguments !== undefined &&
      (await declaredAs(connection, name, declaration.previousArguments))
    if (!previousShape && !options.migrateAnyShape) {
      return {
        status: 'kept',
        reason: 'not in the shape of the previous release, so start-up leaves it alone',
        howToMigrate: 'stop its consumers and run `npm run events:upgrade` (no message is lost)',
      }
    }
  }

  let acquired: Awaited<ReturnType<typeof acquireLock>>
  try {
    acquired = await acquireLock(connection, topology.upgradeLock)
  } catch (error) {
    logger.warn('another process is migrating RabbitMQ queues; not waiting longer', { queue: name, error })
    return {
      status: 'kept',
      reason: 'the migration lock is held by another connection',
      howToMigrate: 'it is migrated by the process holding the lock, or on the next start',
    }
  }
  try {
    // Another process may have finished it while this one waited for the lock.
    const stillUnfinished = migratable && (await queueExists(connection, migrationNames(name).holding))
    const current = await declaredAs(connection, name, declaration.arguments)
    if (current && !stillUnfinished) return { status: 'current' }
    if (!current) {
      const { consumerCount } = await onOwnChannel(connection, (channel) => channel.checkQueue(name))
      // Deleting a queue cancels its consumers and drops what they hold unacknowledged.
      if (consumerCount > 0 && !stillUnfinished) {
        return {
          status: 'kept',
          reason: `${consumerCount} consumer(s) attached; a queue is only migrated without consumers`,
          howToMigrate:
            'stop its consumers; the next start of a relay or consumer (or `npm run events:upgrade`) migrates it',
        }
      }
    }
    logger.info('migrating a RabbitMQ queue to new arguments', {
      queue: name,
      arguments: declaration.arguments,
    })
    const moved = await runMigration(connection, declaration, !current)
    logger.info('RabbitMQ queue migrated', { queue: name, moved })
    return { status: 'migrated', moved }
  } catch (error) {
    logger.error('RabbitMQ queue migration interrupted; the next declaration resumes it', {
      queue: name,
      holdingQueue: migrationNames(name).holding,
      error,
    })
    return { status: 'interrupted' }
  } finally {
    await acquired.release()
  }
}

async function runMigration(
  connection: ChannelModel,
  declaration: QueueDeclaration,
  oldQueueExists: boolean,
): Promise<number> {
  const { name, bindings } = declaration
  const { holding, router } = migrationNames(name)
  const channel = await openChannel(connection)
  try {
    // 1. From here on, new events also land in the holding queue.
    await channel.assertQueue(holding, { durable: true, arguments: { 'x-queue-type': 'classic' } })
    for (const { exchange, key } of bindings) await channel.bindQueue(holding, exchange, key)
    await channel.assertExchange(router, 'fanout', { durable: true })

    // 2. The old queue gets nothing new; what it holds goes to the holding queue; then it goes.
    if (oldQueueExists) {
      for (const { exchange, key } of bindings) await channel.unbindQueue(name, exchange, key)
      await routeOnlyTo(channel, router, holding, name)
      await moveAll(connection, name, router)
      const { messageCount, consumerCount } = await channel.checkQueue(name)
      if (messageCount > 0 || consumerCount > 0) {
        throw new Error(`${name} is not empty or has consumers again; not deleting it`)
      }
      const deleted = await channel.deleteQueue(name)
      if (deleted.messageCount > 0)
        throw new Error(`${deleted.messageCount} message(s) of ${name} were deleted`)
    }

    // 3. The queue with its new arguments, filled from the holding queue (which is still bound).
    await channel.assertQueue(name, { durable: true, arguments: declaration.arguments })
    await routeOnlyTo(channel, router, name, holding)
    let moved = await moveAll(connection, holding, router)

    // 4. Bindings back to the queue; the holding queue is drained once more and deleted.
    for (const { exchange, key } of bindings) await channel.bindQueue(name, exchange, key)
    for (const { exchange, key } of bindings) await channel.unbindQueue(holding, exchange, key)
    for (;;) {
      moved += await moveAll(connection, holding, router)
      // if-empty: a message routed to it just before the unbind and enqueued after the last move is kept.
      const emptied = await onOwnChannel(connection, (ch) => ch.deleteQueue(holding, { ifEmpty: true })).then(
        () => true,
        (error: unknown) => {
          if (codeOf(error) === PRECONDITION_FAILED) return false
          throw error
        },
      )
      if (emptied) break
    }
    await channel.deleteExchange(router)
    return moved
  } finally {
    await channel.close().catch(() => undefined)
  }
}

/** Binds the fanout router to `target` alone, unbinding `other` first so that no queue feeds itself. */
async function routeOnlyTo(channel: Channel, router: string, target: string, other: string) {
  await channel.unbindQueue(other, router, '')
  await channel.bindQueue(target, router, '')
}

const MOVE_BATCH = 200

/**
 * Moves every message of `from` through `router` until `from` has none ready; each is acknowledged only
 * after the broker confirmed its copy. basic.get rather than a consumer: an empty answer says the queue
 * is drained, where a consumer could only wait. Returns how many were moved.
 */
async function moveAll(connection: ChannelModel, from: string, router: string): Promise<number> {
  const channel = await connection.createConfirmChannel()
  channel.on('error', () => undefined)
  let returned = false
  channel.on('return', () => {
    returned = true
  })
  let moved = 0
  let batch: GetMessage[] = []
  const settle = async () => {
    const last = batch.at(-1)
    if (last === undefined) return
    await channel.waitForConfirms()
    // basic.return comes before the confirm: a returned message was not stored anywhere, so nothing is
    // acknowledged, and the channel's closing puts the batch back.
    if (returned) throw new Error(`messages moved from ${from} through ${router} reached no queue`)
    channel.ack(last, true)
    moved += batch.length
    batch = []
  }
  try {
    for (;;) {
      const message = await channel.get(from, { noAck: false })
      if (message === false) {
        await settle()
        return moved
      }
      channel.publish(router, message.fields.routingKey, message.content, copyProperties(message.properties))
      batch.push(message)
      if (batch.length >= MOVE_BATCH) await settle()
    }
  } finally {
    await channel.close().catch(() => undefined)
  }
}

const copyProperties = (properties: GetMessage['properties']): Options.Publish => {
  const headers: Record<string, unknown> = { ...(properties.headers ?? {}) }
  // Set by quorum queues on redelivery; the new queue counts its own deliveries.
  delete headers['x-delivery-count']
  return {
    contentType: properties.contentType as string | undefined,
    contentEncoding: properties.contentEncoding as string | undefined,
    headers,
    // The holding queue is classic: only persistent messages survive a broker restart there.
    persistent: true,
    priority: properties.priority as number | undefined,
    correlationId: properties.correlationId as string | undefined,
    replyTo: properties.replyTo as string | undefined,
    expiration: properties.expiration as string | undefined,
    messageId: properties.messageId as string | undefined,
    timestamp: properties.timestamp as number | undefined,
    type: properties.type as string | undefined,
    appId: properties.appId as string | undefined,
    // userId is left out: the broker checks it against the publishing connection's user.
    mandatory: true,
  }
}

/**
 * An exclusive queue as a lock: RabbitMQ lets one connection hold it and frees it when that connection
 * closes, so a crashed migrator cannot leave it held. Within one connection, migrations run one at a time.
 */
const localTurns = new WeakMap<ChannelModel, Promise<void>>()

async function acquireLock(connection: ChannelModel, lock: string) {
  const previous = localTurns.get(connection) ?? Promise.resolve()
  let endTurn: () => void = () => undefined
  const turn = new Promise<void>((resolve) => {
    endTurn = resolve
  })
  localTurns.set(
    connection,
    previous.then(() => turn),
  )
  await previous
  const deadline = Date.now() + LOCK_WAIT_MS
  for (;;) {
    const channel = await openChannel(connection)
    try {
      await channel.assertQueue(lock, {
        exclusive: true,
        durable: false,
        arguments: { 'x-queue-type': 'classic' },
      })
      return {
        async release() {
          await channel.deleteQueue(lock).catch(() => undefined)
          await channel.close().catch(() => undefined)
          endTurn()
        },
      }
    } catch (error) {
      await channel.close().catch(() => undefined)
      if (codeOf(error) !== RESOURCE_LOCKED || Date.now() > deadline) {
        endTurn()
        throw error
      }
      // Nothing tells a waiter when another connection lets go of the lock: poll.
      await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS))
    }
  }
}
