import * as v from 'valibot'
import type { EventEnvelope } from './outbox'

/**
 * The message body of every event on commerce.events (docs/events.asyncapi.yaml), as a schema: consumers validate what
 * they receive with it, and docs/events.asyncapi.yaml carries the same schema (a test holds them equal).
 * Objects are strict because this describes schemaVersion 1 exactly; a field added later is a new version.
 */
const Id = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(Number.MAX_SAFE_INTEGER))
const Won = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER))
const Instant = v.pipe(v.string(), v.isoTimestamp())

const OrderLine = v.strictObject({
  productId: Id,
  quantity: v.pipe(v.number(), v.integer(), v.minValue(1)),
  unitPrice: Won,
})

const orderData = {
  orderId: Id,
  userId: Id,
  items: v.pipe(v.array(OrderLine), v.minLength(1)),
  subtotal: Won,
  discount: Won,
  total: Won,
  userCouponId: v.nullable(Id),
  paidAt: Instant,
}

const envelope = {
  eventId: v.pipe(v.string(), v.uuid()),
  schemaVersion: v.literal(1),
  occurredAt: Instant,
}

export const OrderCompletedEventSchema = v.strictObject({
  ...envelope,
  type: v.literal('order.completed'),
  data: v.strictObject({ ...orderData, status: v.literal('PAID') }),
})

export const OrderCancelledEventSchema = v.strictObject({
  ...envelope,
  type: v.literal('order.cancelled'),
  data: v.strictObject({ ...orderData, status: v.literal('CANCELLED'), cancelledAt: Instant }),
})

export const EventEnvelopeSchema = v.variant('type', [OrderCompletedEventSchema, OrderCancelledEventSchema])

export type ValidEventEnvelope = v.InferOutput<typeof EventEnvelopeSchema>

// Every body this schema accepts is an EventEnvelope as the outbox writer types it: a drift of either side
// fails typechecking here rather than in a consumer at run time.
export type SchemaMatchesWriter = ValidEventEnvelope extends EventEnvelope ? true : never
export const schemaMatchesWriter: SchemaMatchesWriter = true
