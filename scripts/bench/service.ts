import type { Hono } from 'hono'
import { route as orderCreateRoute } from '../../functions/order-create/route'
import { loadConfig } from '../../shared/config'
import type { Deps } from '../../shared/deps'
import { createServiceApp } from '../../shared/http/app'
import type { AppEnv } from '../../shared/http/context'
import { routeApp } from '../../shared/http/route'
import { createOrders } from '../../shared/orders/orders'
import { buildDeps } from '../../shared/runtime/deps'
import { discoverFunctions } from '../../shared/runtime/discover'
import { exitOnStartupError } from '../../shared/runtime/serve'
import { listen, onShutdown } from '../../shared/runtime/server'

/**
 * Bench only: every function in one process, like `npm start` but without migrating or seeding (the
 * bench prepares its own database). With BENCH_STOCK_GATE=off, POST /v1/orders is built with the stock
 * gate switched off, the same handler as functions/order-create/handler.ts otherwise, so that the flash
 * sale can be measured with and without it.
 */
function createOrderCreateAppWithoutGate(deps: Deps): Hono<AppEnv> {
  const orders = createOrders(deps, { stockGate: false })
  return routeApp(orderCreateRoute, deps, ({ body, auth, record }) => orders.place(auth, body, record))
}

try {
  const gate = process.env.BENCH_STOCK_GATE !== 'off'
  const config = loadConfig()
  const deps = await buildDeps(config, gate ? 'bench-service' : 'bench-service-no-gate')
  const functions = await discoverFunctions()
  const apps = functions.map((fn) =>
    !gate && fn.name === 'order-create' ? createOrderCreateAppWithoutGate(deps) : fn.create(deps),
  )
  if (!gate && !functions.some((fn) => fn.name === 'order-create')) {
    throw new Error('functions/order-create not found: nothing to switch the stock gate off in')
  }
  const app = createServiceApp(deps, apps, { routes: functions })
  const server = await listen(app, config.port, '127.0.0.1')
  onShutdown({ logger: deps.logger, lifecycle: deps.lifecycle, steps: [server.close, deps.close] })
  process.stdout.write(`bench service (stock gate ${gate ? 'on' : 'off'}) on ${server.port}\n`)
} catch (error) {
  exitOnStartupError(error)
}
