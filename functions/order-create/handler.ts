import type { Deps } from '../../shared/deps'
import { routeApp } from '../../shared/http/route'
import { createOrders, type OrderDeps } from '../../shared/orders/orders'
import { route } from './route'

export default function createOrderCreateApp(deps: OrderDeps & Pick<Deps, 'config'>) {
  const orders = createOrders(deps)
  return routeApp(route, deps, ({ body, auth, record }) => orders.place(auth, body, record))
}
