import * as v from 'valibot'
import { defineRoute } from '../../shared/http/route'
import { IdString, pageQuery } from '../../shared/http/schemas'
import { OrderPageSchema } from '../../shared/orders/schemas'

export const route = defineRoute({
  method: 'GET',
  path: '/v1/users/:userId/orders',
  summary: "A user's orders, newest first",
  tag: 'Orders',
  access: 'self-or-admin',
  params: v.strictObject({ userId: IdString }),
  query: pageQuery,
  response: { status: 200, description: 'A page of orders', schema: OrderPageSchema },
  errors: ['FORBIDDEN'],
  example: {
    params: { userId: 1 },
    query: { limit: 20 },
    response: {
      items: [
        {
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
      ],
      nextCursor: null,
    },
  },
})
