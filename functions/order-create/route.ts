import { defineRoute } from '../../shared/http/route'
import { EXAMPLE_ORDER, OrderSchema, PlaceOrderBody } from '../../shared/orders/schemas'

export const route = defineRoute({
  method: 'POST',
  path: '/v1/orders',
  summary: 'Place and pay an order from the balance, optionally with a user coupon',
  tag: 'Orders',
  access: 'user',
  body: PlaceOrderBody,
  idempotent: true,
  response: { status: 201, description: 'The paid order', schema: OrderSchema },
  errors: [
    'PRODUCT_NOT_FOUND',
    'INSUFFICIENT_STOCK',
    'INSUFFICIENT_BALANCE',
    'COUPON_NOT_USABLE',
    'IDEMPOTENCY_KEY_IN_USE',
    'IDEMPOTENCY_KEY_REUSED',
  ],
  example: {
    body: { items: [{ productId: 1, quantity: 2 }] },
    response: EXAMPLE_ORDER,
  },
})
