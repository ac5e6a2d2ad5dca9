import type { Deps } from '../../shared/deps'
import { routeApp } from '../../shared/http/route'
import { createOrderReader } from '../../shared/orders/read'
import { route } from './route'

export default function createOrderGetApp(deps: Pick<Deps, 'db' | 'config'>) {
  const orders = createOrderReader(deps)
  return routeApp(route, deps, async ({ params, auth }, c) => c.json(await orders.get(auth, params.orderId)))
}
