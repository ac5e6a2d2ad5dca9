import { charge, ensureAccount } from '../../shared/balance/balance'
import { inTransaction } from '../../shared/db/transaction'
import type { Deps } from '../../shared/deps'
import { routeApp } from '../../shared/http/route'
import { route } from './route'

export default function createBalanceChargeApp(deps: Pick<Deps, 'db' | 'redis' | 'logger' | 'config'>) {
  return routeApp(route, deps, async ({ params, body, record }) => {
    // Outside the transaction: concurrent first charges must not race on creating the account row in it.
    await ensureAccount(deps.db, params.userId)
    return inTransaction(deps.db, async (tx) => {
      const balance = await charge(tx, params.userId, body.amount)
      await record.insert(tx, balance)
      return balance
    })
  })
}
