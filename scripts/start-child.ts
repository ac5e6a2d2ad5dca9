import cluster from 'node:cluster'
import { loadConfig } from '../shared/config'
import { createServiceApp } from '../shared/http/app'
import { clusterWorkerExposition } from '../shared/runtime/cluster-metrics'
import { buildDeps } from '../shared/runtime/deps'
import { discoverFunctions, discoverWorkers } from '../shared/runtime/discover'
import { exitOnStartupError } from '../shared/runtime/serve'
import { listen, onShutdown } from '../shared/runtime/server'

/**
 * One child of `npm start` (scripts/start.ts), by START_ROLE: `http` serves every function on PORT (the
 * cluster's workers share the port), `worker` runs the worker folder START_WORKER (the outbox relay or the
 * statistics consumer) with no HTTP server of its own; its metrics reach GET /metrics through the primary.
 */
try {
  if (!cluster.isWorker) throw new Error('scripts/start-child.ts is started by npm start (scripts/start.ts)')
  const config = loadConfig()
  const role = process.env.START_ROLE
  let port: number | undefined
  if (role === 'http') {
    const deps = await buildDeps(config, 'all-functions')
    deps.metrics.exposition = clusterWorkerExposition(deps.metrics.registry)
    const functions = await discoverFunctions()
    const app = createServiceApp(
      deps,
      functions.map((fn) => fn.create(deps)),
      { routes: functions },
    )
    const server = await listen(app, config.port)
    port = server.port
    onShutdown({ logger: deps.logger, lifecycle: deps.lifecycle, steps: [server.close, deps.close] })
  } else if (role === 'worker') {
    const name = process.env.START_WORKER
    const found = (await discoverWorkers()).find((w) => w.name === name)
    if (!found) throw new Error(`no worker folder functions/${name}`)
    const deps = await buildDeps(config, found.name)
    deps.metrics.exposition = clusterWorkerExposition(deps.metrics.registry)
    const running = found.create(deps)
    await running.start()
    onShutdown({ logger: deps.logger, lifecycle: deps.lifecycle, steps: [() => running.stop(), deps.close] })
  } else {
    throw new Error(`START_ROLE must be http or worker, not ${role}`)
  }
  process.send?.({ type: 'commerce:ready', port })
} catch (error) {
  exitOnStartupError(error)
}
