import type { Deps } from '../../shared/deps'
import { routeApp } from '../../shared/http/route'
import { idempotentResponse, readIdempotencyKey } from '../../shared/idempotency/idempotency'
import { createOrders, type OrderDeps } from '../../shared/orders/orders'
import { route } from './route'

export default function createOrderCancelApp(deps: OrderDeps & Pick<Deps, 'config'>) {
  const orders = createOrders(deps)
  return routeApp(route, deps.config, async ({ params, auth }, c) => {
    const key = readIdempotencyKey(c)
    const result = await orders.cancel(auth, params.orderId, { key, method: c.req.method, path: c.req.path })
    return idempotentResponse(c, result)
  })
}
