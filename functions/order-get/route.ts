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
})
