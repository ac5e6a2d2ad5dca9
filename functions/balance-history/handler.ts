import { ledgerPage, toLedgerEntry } from '../../shared/balance/balance'
import type { Deps } from '../../shared/deps'
import { routeApp } from '../../shared/http/route'
import { toPage } from '../../shared/http/schemas'
import { route } from './route'

export default function createBalanceHistoryApp(deps: Pick<Deps, 'db' | 'config'>) {
  return routeApp(route, deps, async ({ params, query }, c) => {
    const rows = await ledgerPage(deps.db, params.userId, query)
    return c.json(toPage(rows, query.limit, (row) => row.id, toLedgerEntry))
  })
}
