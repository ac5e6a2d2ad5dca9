import * as v from 'valibot'
import { Int } from '../http/schemas'

const Id = v.pipe(v.number(), v.safeInteger(), v.minValue(1))
const IsoTime = v.pipe(v.string(), v.isoTimestamp())

export const PlaceOrderBody = v.strictObject({
  items: v.pipe(
    v.array(v.strictObject({ productId: Id, quantity: Int(1, 100) })),
    v.minLength(1),
    v.maxLength(50),
    v.check(
      (items) => new Set(items.map((item) => item.productId)).size === items.length,
      'must name each productId once',
    ),
  ),
  userCouponId: v.optional(Id),
})

export const OrderSchema = v.object({
  id: v.number(),
  userId: v.number(),
  status: v.picklist(['PAID', 'CANCELLED']),
  items: v.array(
    v.object({
      productId: v.number(),
      name: v.string(),
      unitPrice: v.number(),
      quantity: v.number(),
      lineTotal: v.number(),
    }),
  ),
  subtotal: v.number(),
  discount: v.number(),
  total: v.number(),
  userCouponId: v.nullable(v.number()),
  createdAt: IsoTime,
  paidAt: IsoTime,
  cancelledAt: v.optional(IsoTime),
})

export const OrderPageSchema = v.object({ items: v.array(OrderSchema), nextCursor: v.nullable(v.string()) })

/** The order the API reference shows (functions' route examples): one of the demo products, twice. */
export const EXAMPLE_ORDER = {
  id: 1,
  userId: 1,
  status: 'PAID' as const,
  items: [{ productId: 1, name: 'Americano beans 1 kg', unitPrice: 24_000, quantity: 2, lineTotal: 48_000 }],
  subtotal: 48_000,
  discount: 0,
  total: 48_000,
  userCouponId: null,
  createdAt: '2026-11-28T11:36:17.123Z',
  paidAt: '2026-11-28T11:36:17.123Z',
}
