import { execFileSync, spawnSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import amqp, { type Channel, type ConsumeMessage } from 'amqplib'
import { eventTopology, queueBindings } from '../../shared/events/topology'

export type ObservedEvent = { eventId: string; type: string; orderId: number; userId: number }

/**
 * A RabbitMQ virtual host of the run's own, made with rabbitmqctl when it is there (as the broker's
 * operator would): the service's whole topology then lives in it, so the suite can read the real
 * data.platform queue, and neither the run's events nor its statistics consumer meet any other
 * service's. Undefined when rabbitmqctl is not available.
 */
export function createVhost(name: string, user: string): { name: string; remove(): void } | undefined {
  if (spawnSync('rabbitmqctl', ['status'], { stdio: 'ignore' }).status !== 0) return undefined
  execFileSync('rabbitmqctl', ['add_vhost', name], { stdio: 'ignore' })
  execFileSync('rabbitmqctl', ['set_permissions', '-p', name, user, '.*', '.*', '.*'], { stdio: 'ignore' })
  return {
    name,
    remove: () => {
      spawnSync('rabbitmqctl', ['delete_vhost', name], { stdio: 'ignore' })
    },
  }
}

/** Waits until the service has declared `queue` (it does so when its relay first connects). */
async function declaredQueue(connection: amqp.ChannelModel, queue: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    // A failed check closes its channel, so each look gets a fresh one.
    const channel = await connection.createChannel()
    channel.on('error', () => undefined)
    try {
      await channel.checkQueue(queue)
      return channel
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`the service never declared ${queue}: ${String(error)}`)
    }
    await sleep(250)
  }
}

/**
 * What data.platform receives, read straight from RabbitMQ (not through the proxy the faults go
 * through). Only events of this run's users are kept.
 *
 * - `own-vhost`: the run's vhost holds nothing but the service's topology, so the suite consumes the
 *   data.platform queue itself, as the data platform would, once the service has declared it (`start`).
 * - `shared`: without a vhost of its own, `npm start` publishes to the broker's one `commerce.events`,
 *   which other services may publish to as well. The suite then binds an exclusive queue of its own to
 *   it exactly as data.platform is bound, and takes nothing from the real queue.
 */
export async function observeDataPlatform(
  url: string,
  mode: 'own-vhost' | 'shared',
  userIds: () => Set<number>,
) {
  const topology = eventTopology()
  const connection = await amqp.connect(url)
  connection.on('error', () => undefined)
  const events: ObservedEvent[] = []
  let foreign = 0

  const record = (message: ConsumeMessage | null) => {
    if (message === null) return
    let parsed: { eventId?: unknown; type?: unknown; data?: { orderId?: unknown; userId?: unknown } }
    try {
      parsed = JSON.parse(message.content.toString('utf8')) as typeof parsed
    } catch {
      foreign++
      return
    }
    const userId = Number(parsed.data?.userId)
    if (!userIds().has(userId)) {
      foreign++
      return
    }
    events.push({
      eventId: String(message.properties.messageId ?? parsed.eventId),
      type: String(message.properties.type ?? parsed.type),
      orderId: Number(parsed.data?.orderId),
      userId,
    })
  }

  let channel: Channel | undefined
  if (mode === 'shared') {
    channel = await connection.createChannel()
    // The service declares the exchange too, with the same arguments; whichever comes first creates it.
    await channel.assertExchange(topology.exchange, 'topic', { durable: true })
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true })
    const binding = queueBindings(topology).find((b) => b.queue === topology.queues.dataPlatform)
    for (const key of binding?.keys ?? ['order.*']) await channel.bindQueue(queue, topology.exchange, key)
    await channel.consume(queue, record, { noAck: true })
  }

  return {
    events,
    /** Where the events are read from, for the report. */
    source:
      mode === 'own-vhost'
        ? `the data.platform queue of the run's own vhost`
        : `a queue of the suite's own bound to commerce.events as data.platform is (no vhost of its own: rabbitmqctl not found)`,
    /** Starts reading data.platform once the service has declared it (own vhost); a no-op otherwise. */
    async start(timeoutMs = 60_000) {
      if (channel !== undefined) return
      channel = await declaredQueue(connection, topology.queues.dataPlatform, timeoutMs)
      await channel.consume(topology.queues.dataPlatform, record, { noAck: true })
    },
    /** Messages that were not this run's (other services on a shared vhost). */
    foreign: () => foreign,
    async close() {
      await connection.close().catch(() => undefined)
    },
  }
}
