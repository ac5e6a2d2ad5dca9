import amqp from 'amqplib'
import { eventTopology, queueBindings } from '../../shared/events/topology'

export type ObservedEvent = { eventId: string; type: string; orderId: number; userId: number }

/**
 * What data.platform receives, seen without taking its messages: a queue of the suite's own, exclusive
 * and deleted with its connection, bound to the service's exchange exactly as data.platform is. It is
 * connected straight to RabbitMQ, not through the proxy the faults go through.
 *
 * `npm start` publishes to the one topology it knows (shared/events/topology.ts, no suffix), which other
 * services on this broker may publish to as well: only events for this run's users are kept.
 */
export async function observeDataPlatform(url: string, userIds: () => Set<number>) {
  const topology = eventTopology()
  const dataPlatform = queueBindings(topology).find((b) => b.queue === topology.queues.dataPlatform)
  const connection = await amqp.connect(url)
  const channel = await connection.createChannel()
  // The service declares the exchange too, with the same arguments; whichever comes first creates it.
  await channel.assertExchange(topology.exchange, 'topic', { durable: true })
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true })
  for (const key of dataPlatform?.keys ?? ['order.*']) await channel.bindQueue(queue, topology.exchange, key)
  const events: ObservedEvent[] = []
  let foreign = 0
  await channel.consume(
    queue,
    (message) => {
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
    },
    { noAck: true },
  )
  return {
    events,
    /** Messages on the exchange that were not this run's (other services on the same broker). */
    foreign: () => foreign,
    async close() {
      await connection.close().catch(() => undefined)
    },
  }
}
