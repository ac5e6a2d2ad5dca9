import { getBalance } from '../../shared/balance/balance'
import type { Deps } from '../../shared/deps'
import { routeApp } from '../../shared/http/route'
import { route } from './route'

export default function createBalanceGetApp(deps: Pick<Deps, 'db' | 'config'>) {
  return routeApp(route, deps, async ({ params }, c) => {
    return c.json(await getBalance(deps.db, params.userId))
  })
}
