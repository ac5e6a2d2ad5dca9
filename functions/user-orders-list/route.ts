import * as v from 'valibot'
import { defineRoute } from '../../shared/http/route'
import { IdString, pageQuery } from '../../shared/http/schemas'
import { EXAMPLE_ORDER, OrderPageSchema } from '../../shared/orders/schemas'

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
      items: [EXAMPLE_ORDER],
      nextCursor: null,
    },
  },
})
