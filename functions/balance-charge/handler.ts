import { charge, ensureAccount } from '../../shared/balance/balance'
import type { Deps } from '../../shared/deps'
import { assertSelfOrAdmin } from '../../shared/http/auth'
import { routeApp } from '../../shared/http/route'
import { idempotentResponse, readIdempotencyKey, runIdempotent } from '../../shared/idempotency/idempotency'
import { route } from './route'

export default function createBalanceChargeApp(deps: Pick<Deps, 'db' | 'redis' | 'logger' | 'config'>) {
  return routeApp(route, deps.config, async ({ params, body, auth }, c) => {
    const caller = assertSelfOrAdmin(auth, params.userId)
    const key = readIdempotencyKey(c)
    // Outside the transaction: concurrent first charges must not race on creating the account row in it.
    await ensureAccount(deps.db, params.userId)
    const result = await runIdempotent(
      deps,
      { userId: caller.userId, key, method: c.req.method, path: c.req.path, body },
      async (tx) => ({ status: 200, body: await charge(tx, params.userId, body.amount) }),
    )
    return idempotentResponse(c, result)
  })
}
