import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import type { Deps } from '../deps'
import type { ErrorCode } from '../errors'
import {
  type IdempotencyDeps,
  type RecordEffect,
  readIdempotencyKey,
  runIdempotent,
} from '../idempotency/idempotency'
import { type Access, requireAuth, SELF_PARAM } from './auth'
import type { AppEnv, AuthClaims } from './context'
import { parse, parseJson, readBody, readJsonBody, readQuery } from './validate'

type Schema = v.GenericSchema

/** What a function's route.ts declares: the single source for validation, auth, routing and OpenAPI. */
export type RouteDef = {
  method: 'GET' | 'POST' | 'PATCH'
  /** Hono path syntax, e.g. /v1/products/:productId */
  path: string
  summary: string
  tag: string
  access: Access
  params?: Schema
  query?: Schema
  body?: Schema
  /**
   * POSTs that move money or stock take an Idempotency-Key header (docs/api.md): the route layer looks
   * the key up before the handler runs, and the handler's verb records it with its effect.
   */
  idempotent?: boolean
  response: { status: 200 | 201; description: string; schema: Schema }
  /** The problem codes this route can answer with, beyond the ones every route has. */
  errors: readonly ErrorCode[]
  /** A request that succeeds and its response: OpenAPI examples and the docs page's curl and try-it. */
  example?: RouteExample
}

/**
 * Parameters are given as the values a client sends (`productId: 1`), bodies as sent and received.
 * Tests parse each part with the route's own schemas, so an example cannot drift from what is accepted.
 */
export type RouteExample = {
  params?: Record<string, string | number>
  query?: Record<string, string | number>
  body?: unknown
  response: unknown
}

export const defineRoute = <const R extends RouteDef>(route: R): R => route

type Out<S> = S extends Schema ? v.InferOutput<S> : undefined

export type RouteInput<R extends RouteDef> = {
  params: Out<R['params']>
  query: Out<R['query']>
  body: Out<R['body']>
  /** Set on every route but public ones, where it is undefined. */
  auth: R['access'] extends 'public' ? undefined : AuthClaims
  /** On idempotent routes: pass it to the verb, which calls it inside the transaction of its effect. */
  record: R['idempotent'] extends true ? RecordEffect : undefined
}

/** What a route's app needs: the JWT secrets, and the idempotency store on idempotent routes. */
export type RouteDeps<R extends RouteDef> = Pick<Deps, 'config'> &
  (R['idempotent'] extends true ? IdempotencyDeps : unknown)

/**
 * A handler answers with its result, which is sent as JSON with the route's declared status, or with a
 * Response of its own (non-idempotent routes only: a replay must be rebuilt from the stored result).
 */
export type RouteHandler<R extends RouteDef> = (input: RouteInput<R>, c: Context<AppEnv>) => Promise<unknown>

const NoFields = v.strictObject({})

/** A route without a body schema takes none: `{}` is tolerated, any field is a 400 like any unknown field. */
async function refuseBody(c: Context<AppEnv>): Promise<undefined> {
  if (c.req.method === 'GET') return undefined
  const text = await readBody(c)
  if (text.trim() !== '') parse(NoFields, parseJson(text))
  return undefined
}

const hasIdempotencyDeps = (deps: object): deps is IdempotencyDeps =>
  'db' in deps && 'redis' in deps && 'logger' in deps

/** `/:userId`, ended by `/`, the path's end or a Hono pattern (`{[0-9]+}`). */
const SELF_SEGMENT = new RegExp(`/:${SELF_PARAM}([/{]|$)`)

/**
 * The Hono app of one function: auth first (401/403 before 400), then params, query and body are
 * validated with the route's own schemas, then, on idempotent routes, the Idempotency-Key is looked up
 * (a replay answers here), and then the handler runs with typed input.
 */
export function routeApp<R extends RouteDef>(
  route: R,
  deps: RouteDeps<R>,
  handle: RouteHandler<R>,
): Hono<AppEnv> {
  if (route.access === 'self-or-admin' && !SELF_SEGMENT.test(route.path)) {
    throw new Error(`${route.method} ${route.path} is self-or-admin: its path needs a :${SELF_PARAM} segment`)
  }
  const app = new Hono<AppEnv>()
  const auth = route.access === 'public' ? undefined : requireAuth(route.access, deps.config)
  const idempotency = route.idempotent && hasIdempotencyDeps(deps) ? deps : undefined
  if (route.idempotent && !idempotency) {
    throw new Error(`${route.method} ${route.path} is idempotent: its app needs db, redis and logger`)
  }
  const status = route.response.status
  const handler = async (c: Context<AppEnv>) => {
    const params = route.params ? parse(route.params, c.req.param()) : undefined
    const query = route.query ? readQuery(c, route.query) : undefined
    const body = route.body ? await readJsonBody(c, route.body) : await refuseBody(c)
    const caller = c.get('auth')
    if (!idempotency || !caller) {
      const input = { params, query, body, auth: caller, record: undefined } as RouteInput<R>
      const result = await handle(input, c)
      return result instanceof Response ? result : c.json(result, status)
    }
    const request = {
      userId: caller.userId,
      key: readIdempotencyKey(c),
      method: c.req.method,
      path: c.req.path,
      body,
      status,
    }
    const result = await runIdempotent(idempotency, request, (record) =>
      handle({ params, query, body, auth: caller, record } as RouteInput<R>, c),
    )
    if (result.replayed) c.header('Idempotent-Replayed', 'true')
    return c.json(result.body, result.status as typeof status)
  }
  // A public route has no auth step at all, rather than one every request passes through.
  if (auth) app.on(route.method, route.path, auth, handler)
  else app.on(route.method, route.path, handler)
  return app
}
