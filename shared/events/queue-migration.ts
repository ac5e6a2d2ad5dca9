import { randomBytes } from 'node:crypto'
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib'
import type { Logger } from '../logger'
import type { QueueDeclaration } from './topology'

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
 * Only under the topology lock (withTopologyLock): a declaration elsewhere could re-create the queue in
 * the instant a migration has deleted it.
 */
export async function declareQueue(
  connection: ChannelModel,
  declaration: QueueDeclaration,
  logger: Logger,
  options: { migrateAnyShape: boolean },
): Promise<MigrationOutcome> {
  const { name } = declaration
  const migratable = declaration.previousArguments !== undefined || options.migrateAnyShape
  const unfinished = migratable && (await queueExists(connection, migrationNames(name).holding))
  const current = await declaredAs(connection, name, declaration.arguments)
  if (current && !unfinished) return { status: 'current' }
  if (!current && !unfinished) {
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
    const { consumerCount } = await onOwnChannel(connection, (channel) => channel.checkQueue(name))
    // Deleting a queue cancels its consumers and drops what they hold unacknowledged.
    if (consumerCount > 0) {
      return {
        status: 'kept',
        reason: `${consumerCount} consumer(s) attached; a queue is only migrated without consumers`,
        howToMigrate:
          'stop its consumers; the next start of a relay or consumer (or `npm run events:upgrade`) migrates it',
      }
    }
  }
  try {
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
    // As many as it holds now: events keep arriving in it, and a busy publisher could outrun the move.
    const { messageCount: waiting } = await channel.checkQueue(holding)
    let moved = await moveAll(connection, holding, router, waiting)

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
/** Only a liveness guard (messages expiring, a consumer appearing); correctness never depends on it. */
const MOVE_STALL_MS = 10_000

/**
 * Moves messages of `from` through `router` until `from` has none ready (or about `limit` are moved),
 * in their order; each is acknowledged only after the broker confirmed its copy. Returns how many moved.
 */
async function moveAll(
  connection: ChannelModel,
  from: string,
  router: string,
  limit = Number.POSITIVE_INFINITY,
) {
  const channel = await connection.createConfirmChannel()
  channel.on('error', () => undefined)
  let returned = false
  channel.on('return', () => {
    returned = true
  })
  let moved = 0
  try {
    for (;;) {
      const { messageCount } = await channel.checkQueue(from)
      const count = Math.min(messageCount, limit - moved)
      if (count <= 0) return moved
      moved += await moveCount(channel, from, router, count, () => returned)
    }
  } finally {
    await channel.close().catch(() => undefined)
  }
}

/**
 * Consumes `count` messages of `from` (a few more may come before the cancel takes effect; they are moved
 * too), publishes each through `router` and acknowledges them in batches once their copies are confirmed.
 * A consumer rather than basic.get: one round trip per message would take hours for a long queue.
 */
function moveCount(
  channel: ConfirmChannel,
  from: string,
  router: string,
  count: number,
  wasReturned: () => boolean,
): Promise<number> {
  const consumerTag = `upgrade-${randomBytes(6).toString('hex')}`
  let received = 0
  let moved = 0
  let batch: ConsumeMessage[] = []
  let chain = Promise.resolve()
  let stopped = false
  let stall: NodeJS.Timeout | undefined

  const settle = async () => {
    const last = batch.at(-1)
    if (last === undefined) return
    await channel.waitForConfirms()
    // basic.return comes before the confirm: a returned message was not stored anywhere, so nothing is
    // acknowledged, and closing the channel puts the batch back.
    if (wasReturned()) throw new Error(`messages moved from ${from} through ${router} reached no queue`)
    channel.ack(last, true)
    moved += batch.length
    batch = []
  }

  return new Promise<number>((resolve, reject) => {
    const stop = () => {
      clearTimeout(stall)
      if (stopped) return
      stopped = true
      // Deliveries sent before the cancel-ok arrive before it, so after it the chain has them all.
      channel
        .cancel(consumerTag)
        .then(() => chain)
        .then(settle)
        .then(() => resolve(moved), reject)
    }
    const watchForStall = () => {
      clearTimeout(stall)
      if (!stopped) stall = setTimeout(stop, MOVE_STALL_MS)
    }
    channel
      .prefetch(Math.min(count, MOVE_BATCH * 2))
      .then(() =>
        channel.consume(
          from,
          (message) => {
            if (message === null) return reject(new Error(`consumer on ${from} cancelled by the broker`))
            received++
            watchForStall()
            chain = chain.then(async () => {
              channel.publish(
                router,
                message.fields.routingKey,
                message.content,
                copyProperties(message.properties),
              )
              batch.push(message)
              if (batch.length >= MOVE_BATCH) await settle()
            })
            chain.catch(reject)
            if (received >= count) stop()
          },
          { noAck: false, consumerTag },
        ),
      )
      .then(watchForStall, reject)
  })
}

const copyProperties = (properties: ConsumeMessage['properties']): Options.Publish => {
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
 * Runs `work` holding the topology lock: an exclusive queue, which RabbitMQ lets one connection hold and
 * frees when that connection closes, so that a crashed process cannot leave it held. Within one
 * connection, holders take turns. Waiting longer than a minute (a migration of a very long queue) fails,
 * and the caller's reconnect loop tries again.
 */
const localTurns = new WeakMap<ChannelModel, Promise<void>>()

export async function withTopologyLock<T>(connection: ChannelModel, lock: string, work: () => Promise<T>) {
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
  try {
    const channel = await acquire(connection, lock)
    try {
      return await work()
    } finally {
      await channel.deleteQueue(lock).catch(() => undefined)
      await channel.close().catch(() => undefined)
    }
  } finally {
    endTurn()
  }
}

async function acquire(connection: ChannelModel, lock: string): Promise<Channel> {
  const deadline = Date.now() + LOCK_WAIT_MS
  for (;;) {
    const channel = await openChannel(connection)
    try {
      await channel.assertQueue(lock, {
        exclusive: true,
        durable: false,
        arguments: { 'x-queue-type': 'classic' },
      })
      return channel
    } catch (error) {
      await channel.close().catch(() => undefined)
      if (codeOf(error) !== RESOURCE_LOCKED || Date.now() > deadline) throw error
      // Nothing tells a waiter when another connection lets go of the lock: poll.
      await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS))
    }
  }
}
