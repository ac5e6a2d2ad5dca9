import type { Context, MiddlewareHandler } from 'hono'
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

/**
 * Tokens verified lately, by their exact text: a client sends the same token with every request, and
 * checking its signature (an HMAC over WebCrypto) each time is a sizeable share of a cheap request's CPU.
 * An entry is used only until the token's own `exp`; the map is bounded and cleared when full.
 */
const VERIFIED_MAX = 10_000
type Verified = { claims: AuthClaims; expiresAtMs: number }
const verifiedBySecret = new Map<string, Map<string, Verified>>()

const verifiedFor = (secret: string) => {
  let verified = verifiedBySecret.get(secret)
  if (!verified) {
    verified = new Map()
    verifiedBySecret.set(secret, verified)
  }
  return verified
}

/** Verifies `Authorization: Bearer <JWT>` (HS256 only, `exp` required) and returns who is calling. */
export async function authenticate(header: string | undefined, secret: string): Promise<AuthClaims> {
  if (!header) throw unauthenticated('An Authorization: Bearer token is required')
  const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(header.trim())
  const token = match?.[1]
  if (!token) throw unauthenticated('The Authorization header must be "Bearer <JWT>"')
  const verified = verifiedFor(secret)
  const known = verified.get(token)
  if (known && known.expiresAtMs > Date.now()) return known.claims
  let payload: unknown
  try {
    payload = await verify(token, secret, 'HS256')
  } catch {
    throw unauthenticated('The token is invalid, expired or badly signed')
  }
  const parsed = v.safeParse(Claims, payload)
  if (!parsed.success) throw unauthenticated('The token lacks a valid sub, role or exp claim')
  const claims: AuthClaims = { userId: parsed.output.sub, role: parsed.output.role }
  if (verified.size >= VERIFIED_MAX) verified.clear()
  verified.set(token, { claims, expiresAtMs: parsed.output.exp * 1000 })
  return claims
}

/** This request's caller, verified at most once however many steps ask (rate limit, then the route). */
export function authenticateOnce(c: Context<AppEnv>, secret: string): Promise<AuthClaims> {
  let attempt = c.get('authAttempt')
  if (!attempt) {
    attempt = authenticate(c.req.header('Authorization'), secret)
    // Whoever asks handles the failure; this only keeps an unasked-for rejection from being unhandled.
    attempt.catch(() => undefined)
    c.set('authAttempt', attempt)
  }
  return attempt
}

export type Access = 'public' | 'user' | 'admin'

/** Sets c.var.auth for `user` and `admin` routes and refuses a non-admin on `admin` routes. */
export const requireAuth =
  (access: Exclude<Access, 'public'>, secret: string): MiddlewareHandler<AppEnv> =>
  async (c, next) => {
    const auth = await authenticateOnce(c, secret)
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
