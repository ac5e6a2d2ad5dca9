import { defineRoute } from '../../shared/http/route'
import { idParams } from '../../shared/http/schemas'
import { OrderSchema } from '../../shared/orders/schemas'

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
    response: {
      id: 1,
      userId: 1,
      status: 'CANCELLED',
      items: [
        { productId: 1, name: 'Americano beans 1 kg', unitPrice: 24_000, quantity: 2, lineTotal: 48_000 },
      ],
      subtotal: 48_000,
      discount: 0,
      total: 48_000,
      userCouponId: null,
      createdAt: '2026-11-28T11:36:17.123Z',
      paidAt: '2026-11-28T11:36:17.123Z',
      cancelledAt: '2026-11-28T12:05:00.000Z',
    },
  },
})
