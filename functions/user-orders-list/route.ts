import * as v from 'valibot'
import { defineRoute } from '../../shared/http/route'
import { IdString, pageQuery } from '../../shared/http/schemas'
import { OrderPageSchema } from '../../shared/orders/schemas'

export const route = defineRoute({
  method: 'GET',
  path: '/v1/users/:userId/orders',
  summary: "A user's orders, newest first",
  tag: 'Orders',
  access: 'user',
  params: v.strictObject({ userId: IdString }),
  query: pageQuery,
  response: { status: 200, description: 'A page of orders', schema: OrderPageSchema },
  errors: ['FORBIDDEN'],
})
