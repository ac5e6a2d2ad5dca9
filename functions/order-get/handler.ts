import type { Deps } from '../../shared/deps'
import { routeApp } from '../../shared/http/route'
import { createOrders, type OrderDeps } from '../../shared/orders/orders'
import { route } from './route'

export default function createOrderGetApp(deps: OrderDeps & Pick<Deps, 'config'>) {
  const orders = createOrders(deps)
  return routeApp(route, deps, async ({ params, auth }, c) => c.json(await orders.get(auth, params.orderId)))
}
