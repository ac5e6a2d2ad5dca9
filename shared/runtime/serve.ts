import { setFlagsFromString } from 'node:v8'
import type { Hono } from 'hono'
import { ConfigError, loadConfig } from '../config'
import type { Deps } from '../deps'
import { createServiceApp } from '../http/app'
import type { AppEnv } from '../http/context'
import type { RouteDef } from '../http/route'
import { buildDeps, StartupError } from './deps'
import type { RunningWorker, WorkerDef } from './discover'
import { listen, onShutdown } from './server'

/** Prints what the operator must fix, without a stack trace, and exits 1. */
export function exitOnStartupError(error: unknown): never {
  if (error instanceof ConfigError || error instanceof StartupError) {
    process.stderr.write(`${error.message}\n`)
  } else {
    process.stderr.write(`Start-up failed: ${error instanceof Error ? error.message : String(error)}\n`)
  }
  process.exit(1)
}

/**
 * A bundle starts with V8's young generation held at its initial size (YOUNG_GENERATION_AT_START in
 * scripts/build.ts); once the process serves, it grows under load as V8 does by default (a factor of 2).
 */
const serveWithDefaultYoungGeneration = () => setFlagsFromString('--semi-space-growth-factor=2')

/** The container entry of one function: config → deps once → serve on PORT → graceful shutdown. */
export async function serveFunction(name: string, route: RouteDef, create: (deps: Deps) => Hono<AppEnv>) {
  try {
    const config = loadConfig()
    const deps = await buildDeps(config, name)
    const server = await listen(
      createServiceApp(deps, [create(deps)], { routes: [{ name, route }] }),
      config.port,
    )
    onShutdown({ logger: deps.logger, lifecycle: deps.lifecycle, steps: [server.close, deps.close] })
    serveWithDefaultYoungGeneration()
    deps.logger.info('listening', {
      function: name,
      route: `${route.method} ${route.path}`,
      port: server.port,
    })
  } catch (error) {
    exitOnStartupError(error)
  }
}

/**
 * The container entry of one worker (functions/<name>/worker.ts): config → deps once → health and metrics
 * on PORT → the worker → on SIGTERM the worker stops (in-flight work finishes) before the pools close.
 */
export async function serveWorker(worker: WorkerDef, create: (deps: Deps) => RunningWorker) {
  try {
    const config = loadConfig()
    const deps = await buildDeps(config, worker.name)
    const server = await listen(createServiceApp(deps, []), config.port)
    const running = create(deps)
    await running.start()
    serveWithDefaultYoungGeneration()
    onShutdown({
      logger: deps.logger,
      lifecycle: deps.lifecycle,
      steps: [() => running.stop(), server.close, deps.close],
    })
    deps.logger.info('worker running', { worker: worker.name, port: server.port })
  } catch (error) {
    exitOnStartupError(error)
  }
}
