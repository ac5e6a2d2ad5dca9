import { type Context, Hono, type MiddlewareHandler } from 'hono'
import * as v from 'valibot'
import type { ErrorCode } from '../errors'
import { type Access, requireAuth } from './auth'
import type { AppEnv, AuthClaims } from './context'
import { parse, parseJson, readJsonBody, readQuery } from './validate'

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
  /** POSTs that move money or stock accept an Idempotency-Key header (SPEC §1). */
  idempotent?: boolean
  response: { status: 200 | 201; description: string; schema: Schema }
  /** The problem codes this route can answer with, beyond the ones every route has. */
  errors: readonly ErrorCode[]
}

export const defineRoute = <const R extends RouteDef>(route: R): R => route

type Out<S> = S extends Schema ? v.InferOutput<S> : undefined

export type RouteInput<R extends RouteDef> = {
  params: Out<R['params']>
  query: Out<R['query']>
  body: Out<R['body']>
  /** Set on `user` and `admin` routes; undefined on public ones. */
  auth: R['access'] extends 'public' ? undefined : AuthClaims
}

const passThrough: MiddlewareHandler<AppEnv> = async (_c, next) => {
  await next()
}

const NoFields = v.strictObject({})

/** A route without a body schema takes none: `{}` is tolerated, any field is a 400 like any unknown field. */
async function refuseBody(c: Context<AppEnv>): Promise<undefined> {
  if (c.req.method === 'GET') return undefined
  const text = await c.req.text()
  if (text.trim() !== '') parse(NoFields, parseJson(text))
  return undefined
}

/**
 * The Hono app of one function: auth first (401/403 before 400), then params, query and body are
 * validated with the route's own schemas, then the handler runs with typed input.
 */
export function routeApp<R extends RouteDef>(
  route: R,
  options: { jwtSecret: string },
  handle: (input: RouteInput<R>, c: Context<AppEnv>) => Promise<Response>,
): Hono<AppEnv> {
  const app = new Hono<AppEnv>()
  const auth = route.access === 'public' ? passThrough : requireAuth(route.access, options.jwtSecret)
  app.on(route.method, route.path, auth, async (c) => {
    const params = route.params ? parse(route.params, c.req.param()) : undefined
    const query = route.query ? readQuery(c, route.query) : undefined
    const body = route.body ? await readJsonBody(c, route.body) : await refuseBody(c)
    const input = { params, query, body, auth: c.get('auth') } as RouteInput<R>
    return handle(input, c)
  })
  return app
}
