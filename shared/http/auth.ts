import type { MiddlewareHandler } from 'hono'
import { sign, verify } from 'hono/jwt'
import * as v from 'valibot'
import { AppError } from '../errors'
import type { AppEnv, AuthClaims } from './context'

const Claims = v.object({
  sub: v.pipe(
    v.string(),
    v.regex(/^[1-9][0-9]{0,15}$/),
    v.transform(Number),
    v.maxValue(Number.MAX_SAFE_INTEGER),
  ),
  role: v.picklist(['user', 'admin']),
  exp: v.number(),
})

const unauthenticated = (detail: string) => new AppError('UNAUTHENTICATED', detail)

/** Verifies `Authorization: Bearer <JWT>` (HS256 only, `exp` required) and returns who is calling. */
export async function authenticate(header: string | undefined, secret: string): Promise<AuthClaims> {
  if (!header) throw unauthenticated('An Authorization: Bearer token is required')
  const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(header.trim())
  if (!match?.[1]) throw unauthenticated('The Authorization header must be "Bearer <JWT>"')
  let payload: unknown
  try {
    payload = await verify(match[1], secret, 'HS256')
  } catch {
    throw unauthenticated('The token is invalid, expired or badly signed')
  }
  const claims = v.safeParse(Claims, payload)
  if (!claims.success) throw unauthenticated('The token lacks a valid sub, role or exp claim')
  return { userId: claims.output.sub, role: claims.output.role }
}

export type Access = 'public' | 'user' | 'admin'

/** Sets c.var.auth for `user` and `admin` routes and refuses a non-admin on `admin` routes. */
export const requireAuth =
  (access: Exclude<Access, 'public'>, secret: string): MiddlewareHandler<AppEnv> =>
  async (c, next) => {
    const auth = await authenticate(c.req.header('Authorization'), secret)
    if (access === 'admin' && auth.role !== 'admin') {
      throw new AppError('FORBIDDEN', 'This route needs the admin role')
    }
    c.set('auth', auth)
    await next()
  }

/** `/v1/users/{userId}/...`: the user themself or an admin. */
export function assertSelfOrAdmin(auth: AuthClaims | undefined, userId: number): AuthClaims {
  if (!auth) throw unauthenticated('An Authorization: Bearer token is required')
  if (auth.role !== 'admin' && auth.userId !== userId) {
    throw new AppError('FORBIDDEN', "You may only access your own account's resources")
  }
  return auth
}

export async function mintToken(
  secret: string,
  claims: { sub: number; role: 'user' | 'admin'; ttlSeconds: number },
) {
  const now = Math.floor(Date.now() / 1000)
  return sign(
    { sub: String(claims.sub), role: claims.role, iat: now, exp: now + claims.ttlSeconds },
    secret,
    'HS256',
  )
}
