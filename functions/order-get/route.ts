import { defineRoute } from '../../shared/http/route'
import { idParams } from '../../shared/http/schemas'
import { OrderSchema } from '../../shared/orders/schemas'

export const route = defineRoute({
  method: 'GET',
  path: '/v1/orders/:orderId',
  summary: "Get one of the caller's orders (admins: any order)",
  tag: 'Orders',
  access: 'user',
  params: idParams('orderId'),
  response: { status: 200, description: 'The order', schema: OrderSchema },
  errors: ['ORDER_NOT_FOUND'],
  example: {
    params: { orderId: 1 },
    response: {
      id: 1,
      userId: 1,
      status: 'PAID',
      items: [
        { productId: 1, name: 'Americano beans 1 kg', unitPrice: 24_000, quantity: 2, lineTotal: 48_000 },
      ],
      subtotal: 48_000,
      discount: 0,
      total: 48_000,
      userCouponId: null,
      createdAt: '2026-11-28T11:36:17.123Z',
      paidAt: '2026-11-28T11:36:17.123Z',
    },
  },
})
