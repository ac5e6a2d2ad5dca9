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
