import { defineRoute } from '../../shared/http/route'
import { idParams } from '../../shared/http/schemas'
import { EXAMPLE_ORDER, OrderSchema } from '../../shared/orders/schemas'

export const route = defineRoute({
  method: 'POST',
  path: '/v1/orders/:orderId/cancel',
  summary: 'Cancel a paid order: refund, restock, coupon back',
  tag: 'Orders',
  access: 'user',
  params: idParams('orderId'),
  idempotent: true,
  response: { status: 200, description: 'The cancelled order', schema: OrderSchema },
  errors: ['ORDER_NOT_FOUND', 'ORDER_NOT_CANCELLABLE', 'IDEMPOTENCY_KEY_IN_USE', 'IDEMPOTENCY_KEY_REUSED'],
  example: {
    params: { orderId: 1 },
    response: { ...EXAMPLE_ORDER, status: 'CANCELLED', cancelledAt: '2026-11-28T12:05:00.000Z' },
  },
})
