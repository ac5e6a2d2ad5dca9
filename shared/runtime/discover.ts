import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { Hono } from 'hono'
import type { Deps } from '../deps'
import type { AppEnv } from '../http/context'
import type { RouteDef } from '../http/route'

export type HttpFunction = { name: string; route: RouteDef; create: (deps: Deps) => Hono<AppEnv> }

export const FUNCTIONS_DIR = new URL('../../functions/', import.meta.url)

/** The folders under functions/ that hold `file`, sorted by name. */
function foldersWith(file: string, dir: URL): string[] {
  const root = dir.pathname
  return readdirSync(root)
    .filter((name) => statSync(join(root, name)).isDirectory())
    .filter((name) => {
      try {
        return statSync(join(root, name, file)).isFile()
      } catch {
        return false
      }
    })
    .sort()
}

/** Every folder under functions/ that has a route.ts: adding a function is adding a folder. */
export function functionNames(dir: URL = FUNCTIONS_DIR): string[] {
  return foldersWith('route.ts', dir)
}

/**
 * Every folder under functions/ that has an index.ts (a container entry): the HTTP functions and the
 * long-running workers, which have no route.ts. This is what gets bundled and deployed.
 */
export function entryNames(dir: URL = FUNCTIONS_DIR): string[] {
  return foldersWith('index.ts', dir)
}

const isRoute = (value: unknown): value is RouteDef =>
  typeof value === 'object' && value !== null && 'method' in value && 'path' in value

/**
 * Static segments before parameters, so /v1/products/popular is tried before /v1/products/:productId
 * whatever the folders are called.
 */
export function byRouteSpecificity(a: { route: RouteDef }, b: { route: RouteDef }): number {
  const as = a.route.path.split('/')
  const bs = b.route.path.split('/')
  for (let i = 0; i < Math.min(as.length, bs.length); i++) {
    const ap = as[i]?.startsWith(':') ?? false
    const bp = bs[i]?.startsWith(':') ?? false
    if (ap !== bp) return ap ? 1 : -1
  }
  return a.route.path.localeCompare(b.route.path) || a.route.method.localeCompare(b.route.method)
}

export async function discoverFunctions(dir: URL = FUNCTIONS_DIR): Promise<HttpFunction[]> {
  const found = await Promise.all(
    functionNames(dir).map(async (name) => {
      const routeModule: Record<string, unknown> = await import(
        pathToFileURL(join(dir.pathname, name, 'route.ts')).href
      )
      const handlerModule: Record<string, unknown> = await import(
        pathToFileURL(join(dir.pathname, name, 'handler.ts')).href
      )
      const route = routeModule.route
      const create = handlerModule.default
      if (!isRoute(route) || typeof create !== 'function') {
        throw new Error(
          `functions/${name}: route.ts must export \`route\` and handler.ts a default app factory`,
        )
      }
      return { name, route, create: create as HttpFunction['create'] }
    }),
  )
  return found.sort(byRouteSpecificity)
}

/** What a worker folder's worker.ts declares: its name and what it does, for logs and the start banner. */
export type WorkerDef = { name: string; description: string }

export const defineWorker = <const W extends WorkerDef>(worker: W): W => worker

/** A long-running consumer: `start` returns once it runs (connections are retried in the background). */
export type RunningWorker = { start(): Promise<void>; stop(): Promise<void> }

export type WorkerFunction = { name: string; worker: WorkerDef; create: (deps: Deps) => RunningWorker }

/** Every folder under functions/ that has a worker.ts: adding a worker is adding a folder, like a function. */
export function workerNames(dir: URL = FUNCTIONS_DIR): string[] {
  const root = dir.pathname
  return readdirSync(root)
    .filter((name) => {
      try {
        return statSync(join(root, name, 'worker.ts')).isFile()
      } catch {
        return false
      }
    })
    .sort()
}

const isWorkerDef = (value: unknown): value is WorkerDef =>
  typeof value === 'object' && value !== null && 'name' in value && 'description' in value

export async function discoverWorkers(dir: URL = FUNCTIONS_DIR): Promise<WorkerFunction[]> {
  return Promise.all(
    workerNames(dir).map(async (name) => {
      const workerModule: Record<string, unknown> = await import(
        pathToFileURL(join(dir.pathname, name, 'worker.ts')).href
      )
      const handlerModule: Record<string, unknown> = await import(
        pathToFileURL(join(dir.pathname, name, 'handler.ts')).href
      )
      const worker = workerModule.worker
      const create = handlerModule.default
      if (!isWorkerDef(worker) || typeof create !== 'function') {
        throw new Error(
          `functions/${name}: worker.ts must export \`worker\` and handler.ts a default worker factory`,
        )
      }
      return { name, worker, create: create as WorkerFunction['create'] }
    }),
  )
}
