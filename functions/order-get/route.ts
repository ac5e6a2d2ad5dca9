import { defineRoute } from '../../shared/http/route'
import { idParams } from '../../shared/http/schemas'
import { EXAMPLE_ORDER, OrderSchema } from '../../shared/orders/schemas'

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
    response: EXAMPLE_ORDER,
  },
})
