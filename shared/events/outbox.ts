import { randomUUID } from 'node:crypto'
import type { Tx } from '../db/client'
import { outbox } from '../db/schema'

/** Routing keys on exchange commerce.events (docs/events.md). */
export type OrderEventType = 'order.completed' | 'order.cancelled'

export type OrderEventData = {
  orderId: number
  userId: number
  status: 'PAID' | 'CANCELLED'
  items: Array<{ productId: number; quantity: number; unitPrice: number }>
  subtotal: number
  discount: number
  total: number
  userCouponId: number | null
  paidAt: string
  cancelledAt?: string
}

/** The message body exactly as published and as the data platform reads it. */
export type EventEnvelope = {
  eventId: string
  type: OrderEventType
  schemaVersion: 1
  occurredAt: string
  data: OrderEventData
}

/**
 * Writes the event into the outbox inside the caller's transaction: it commits with the order or not at
 * all. Publishing is the relay's job; call `OutboxNotifier` after commit only to make it prompt.
 */
export async function writeOutboxEvent(
  tx: Tx,
  type: OrderEventType,
  data: OrderEventData,
  occurredAt: Date,
): Promise<EventEnvelope> {
  const envelope: EventEnvelope = {
    eventId: randomUUID(),
    type,
    schemaVersion: 1,
    occurredAt: occurredAt.toISOString(),
    data,
  }
  await tx.insert(outbox).values({
    eventId: envelope.eventId,
    type,
    aggregateId: data.orderId,
    payload: envelope,
    createdAt: occurredAt,
  })
  return envelope
}

/**
 * Wakes the relay after a commit so that it publishes now. Best effort by design: if it fails, the relay's
 * sweeper still finds the rows, so a caller logs the failure and never fails the request over it.
 */
export type OutboxNotifier = { notify(): Promise<void> }

/** The pub/sub channel the relay listens on, one per database (Redis keys are namespaced the same way). */
export const outboxWakeChannel = (keyPrefix: string) => `${keyPrefix}outbox-wake`

/**
 * One wake-up per turn of the event loop however many orders committed in it: a burst of orders costs
 * the relay one PUBLISH, not a message or a job each. The relay reads the rows from the outbox itself.
 */
export function createOutboxWaker(
  redis: { publish(channel: string, message: string): Promise<number> },
  channel: string,
): OutboxNotifier {
  let pending: Promise<void> | undefined
  return {
    notify() {
      pending ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        // Reset before publishing: a commit after this point must cause a wake of its own.
        pending = undefined
        await redis.publish(channel, 'wake')
      })
      return pending
    },
  }
}
