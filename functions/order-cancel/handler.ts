import type { Deps } from '../../shared/deps'
import { routeApp } from '../../shared/http/route'
import { createOrders, type OrderDeps } from '../../shared/orders/orders'
import { route } from './route'

export default function createOrderCancelApp(deps: OrderDeps & Pick<Deps, 'config'>) {
  const orders = createOrders(deps)
  return routeApp(route, deps, ({ params, auth, record }) => orders.cancel(auth, params.orderId, record))
}
