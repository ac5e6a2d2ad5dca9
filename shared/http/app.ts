import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import { type Context, Hono } from 'hono'
import { matchedRoutes } from 'hono/route'
import { isRetryableTransactionError } from '../db/transaction'
import type { Deps } from '../deps'
import { AppError, isAppError } from '../errors'
import { isDependencyFailure } from '../failures'
import type { AppEnv } from './context'
import { createDocsApp } from './docs'
import type { DocumentedRoute } from './openapi'
import { problemResponse } from './problem'
import { rateLimit } from './rate-limit'
import { MAX_BODY_BYTES, tooLarge } from './validate'

export { MAX_BODY_BYTES }

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
const PING_TIMEOUT_MS = 1_000

export type ServiceDeps = Pick<Deps, 'config' | 'redis' | 'logger' | 'metrics' | 'lifecycle' | 'ping'>

export type ServiceAppOptions = {
  /** The routes of `functions` with their names, documented at /openapi.json and /docs. */
  routes?: readonly DocumentedRoute[]
}

const withTimeout = <T>(promise: Promise<T>, ms: number): Promise<T> =>
  Promise.race([
    promise,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref(),
    ),
  ])

const hasBody = (c: Context) => {
  const length = c.req.header('Content-Length')
  return c.req.header('Transfer-Encoding') !== undefined || (length !== undefined && length !== '0')
}

const isJson = (contentType: string | undefined) => {
  const media = contentType?.split(';')[0]?.trim().toLowerCase()
  return (
    media === 'application/json' || (media?.startsWith('application/') === true && media.endsWith('+json'))
  )
}

/** Probes and scrapes: counted in the histogram, not written to the access log. */
const QUIET_ROUTES = new Set(['/metrics', '/health/live', '/health/ready'])

/**
 * One histogram sample per request. prom-client hashes the label values on every observe; the child per
 * label combination (a bounded set: method × route pattern × status) is looked up in a map instead.
 */
function requestObserver(metrics: ServiceDeps['metrics']) {
  const children = new Map<string, { observe(seconds: number): void }>()
  return (method: string, route: string, status: number, seconds: number) => {
    const key = `${method} ${route} ${status}`
    let child = children.get(key)
    if (!child) {
      child = metrics.httpDuration.labels({ method, route, status: String(status) })
      children.set(key, child)
    }
    child.observe(seconds)
  }
}

/** The matched route pattern (bounded label set); middleware is registered as ALL, routes by method. */
const routeLabel = (c: Context) => {
  const last = matchedRoutes(c).at(-1)
  return last && last.method !== 'ALL' ? last.path : 'unmatched'
}

/**
 * The one app every function is served by: request id, one log line and one histogram sample per
 * request, a per-caller rate limit on /v1, 415/413 guards, health, metrics and API docs, problem JSON
 * for every failure. `functions` are the Hono apps of the functions this process serves, mounted in the
 * order given; `options.routes` are their names and RouteDefs, for the docs.
 */
export function createServiceApp(
  deps: ServiceDeps,
  functions: Hono<AppEnv>[],
  options: ServiceAppOptions = {},
): Hono<AppEnv> {
  const app = new Hono<AppEnv>()
  const { logger, metrics } = deps

  const sample = deps.config.accessLogSampleRate
  const observe = requestObserver(metrics)
  app.use('*', async (c, next) => {
    const started = performance.now()
    const incoming = c.req.header('X-Request-Id')
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID()
    c.set('requestId', requestId)
    // On Node's response itself where there is one: a header set through Hono makes it build a web
    // Headers object for every response, which the Node adapter otherwise skips.
    const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing
    if (outgoing) outgoing.setHeader('X-Request-Id', requestId)
    else c.header('X-Request-Id', requestId)
    await next()
    const route = routeLabel(c)
    const seconds = (performance.now() - started) / 1000
    const status = c.res.status
    observe(c.req.method, route, status, seconds)
    if (sample > 0 && (sample >= 1 || Math.random() < sample) && !QUIET_ROUTES.has(route)) {
      logger.request({
        requestId,
        method: c.req.method,
        route,
        path: c.req.path,
        status,
        durationMs: Math.round(seconds * 10_000) / 10,
        userId: c.get('auth')?.userId,
      })
    }
  })

  // Before the body guards: a caller over the limit costs no body reading. Health, metrics and docs
  // stay outside so that probes and scrapes are never refused.
  const limit = rateLimit(deps)
  if (limit) app.use('/v1/*', limit)

  // One guard for bodies: declared as JSON (415), and a declared length over the limit refused before
  // anything reads it (413); a chunked body is counted as the route reads it (readBody in ./validate).
  app.use('*', async (c, next) => {
    if (BODY_METHODS.has(c.req.method)) {
      if (hasBody(c) && !isJson(c.req.header('Content-Type'))) {
        throw new AppError(
          'UNSUPPORTED_MEDIA_TYPE',
          'Request bodies must be sent as Content-Type: application/json',
        )
      }
      if (Number(c.req.header('Content-Length') ?? 0) > MAX_BODY_BYTES) throw tooLarge()
    }
    await next()
  })

  app.get('/health/live', (c) => c.json({ status: 'live' }))

  app.get('/health/ready', async (c) => {
    if (deps.lifecycle.draining) {
      return problemResponse(
        c,
        new AppError('SERVICE_UNAVAILABLE', 'Draining: this instance is shutting down'),
        {
          checks: { process: 'draining' },
        },
      )
    }
    const [mysql, redis] = await Promise.allSettled([
      withTimeout(deps.ping.mysql(), PING_TIMEOUT_MS),
      withTimeout(deps.ping.redis(), PING_TIMEOUT_MS),
    ])
    const checks = {
      mysql: mysql.status === 'fulfilled' ? 'up' : 'down',
      redis: redis.status === 'fulfilled' ? 'up' : 'down',
    }
    if (checks.mysql === 'up' && checks.redis === 'up') return c.json({ status: 'ready', checks })
    const down = Object.keys(checks).filter((key) => checks[key as keyof typeof checks] === 'down')
    return problemResponse(
      c,
      new AppError('SERVICE_UNAVAILABLE', `Not ready: ${down.join(', ')} unreachable`),
      {
        checks,
      },
    )
  })

  app.get('/metrics', async (c) => {
    const body = await metrics.exposition()
    return c.body(body, 200, { 'Content-Type': metrics.registry.contentType })
  })

  app.route('/', createDocsApp(options.routes ?? []))

  for (const fn of functions) app.route('/', fn)

  // A known path asked with another method is 405 with Allow, as nginx answers in front of the functions.
  const known = functions.flatMap((fn) =>
    fn.routes
      .filter((r) => r.method !== 'ALL')
      .map((r) => ({ method: r.method, pattern: new RegExp(`^${r.path.replace(/:\w+/g, '[^/]+')}$`) })),
  )
  app.notFound((c) => {
    const allowed = [...new Set(known.filter((r) => r.pattern.test(c.req.path)).map((r) => r.method))]
    if (allowed.length === 0) {
      return problemResponse(c, new AppError('NOT_FOUND', `No route for ${c.req.method} ${c.req.path}`))
    }
    const response = problemResponse(
      c,
      new AppError('METHOD_NOT_ALLOWED', `${c.req.path} accepts ${allowed.join(', ')}`),
    )
    response.headers.set('Allow', allowed.join(', '))
    return response
  })

  app.onError((error, c) => {
    if (isAppError(error) && error.status < 500) return problemResponse(c, error)
    const log = logger.child({ requestId: c.get('requestId') })
    if (isAppError(error)) {
      log.warn('request failed', { code: error.code, detail: error.detail, error: error.extra.cause })
      return problemResponse(c, error)
    }
    if (isRetryableTransactionError(error)) {
      // A statement outside a retried transaction waited out a lock (a transaction stuck behind a
      // network that went silent, say) or was chosen as a deadlock victim: busy, not broken.
      log.warn('database busy', { error })
      return problemResponse(
        c,
        new AppError(
          'SERVICE_UNAVAILABLE',
          'The database is too busy to complete this request; retry shortly',
          {
            retryAfterSeconds: 1,
          },
        ),
      )
    }
    if (isDependencyFailure(error)) {
      log.error('dependency unavailable', { error })
      return problemResponse(
        c,
        new AppError('SERVICE_UNAVAILABLE', 'A backing service is unavailable; retry shortly', {
          retryAfterSeconds: 1,
        }),
      )
    }
    log.error('unexpected error', { error })
    return problemResponse(
      c,
      new AppError('INTERNAL_ERROR', 'An unexpected error occurred; it has been logged'),
    )
  })

  return app
}
