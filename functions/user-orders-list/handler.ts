import type { Deps } from '../../shared/deps'
import { routeApp } from '../../shared/http/route'
import { toPage } from '../../shared/http/schemas'
import { createOrderReader } from '../../shared/orders/read'
import { route } from './route'

export default function createUserOrdersListApp(deps: Pick<Deps, 'db' | 'config'>) {
  const orders = createOrderReader(deps)
  return routeApp(route, deps, async ({ params, query }, c) => {
    const rows = await orders.listForUser(params.userId, query)
    return c.json(
      toPage(
        rows,
        query.limit,
        (entry) => entry.row.id,
        (entry) => entry.order,
      ),
    )
  })
}
