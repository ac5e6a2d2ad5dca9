import { createHmac, timingSafeEqual } from 'node:crypto'
import type { Context, MiddlewareHandler } from 'hono'
import { sign } from 'hono/jwt'
import * as v from 'valibot'
import type { Config } from '../config'
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
 * The secrets a token may be signed with: JWT_SECRET, and during a rotation JWT_SECRET_PREVIOUS, so that
 * tokens issued before the switch keep working until they expire. Tokens are only ever signed with
 * JWT_SECRET (mintToken is given that one).
 */
export type JwtKeys = Pick<Config, 'jwtSecret' | 'jwtSecretPrevious'>

const secretsOf = (keys: JwtKeys): string[] =>
  keys.jwtSecretPrevious === undefined || keys.jwtSecretPrevious === keys.jwtSecret
    ? [keys.jwtSecret]
    : [keys.jwtSecret, keys.jwtSecretPrevious]

/**
 * Tokens verified lately, by their exact text: a client sends the same token with every request, and
 * checking its signature (an HMAC) each time is a sizeable share of a cheap request's CPU.
 * An entry is used only until the token's own `exp`; the map is bounded and cleared when full.
 *
 * Kept per secret, and a token is looked up only under the secrets the caller accepts now: one process
 * may serve apps with different keys (tests do), and a token verified with a previous secret must not be
 * let in by an app that no longer accepts that secret.
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

const decodeJson = (part: string): unknown => {
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
  } catch {
    return undefined
  }
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * The payload of an HS256 JWT whose signature one of `secrets` made, and that secret; undefined when none
 * did, the header names another algorithm, or the token is not valid now (`exp` passed, `nbf` or `iat`
 * still ahead). The HMAC is node:crypto's, synchronous: hono/jwt's verify (WebCrypto) took 80 to 170 µs
 * of CPU per token against 6 to 25 µs for this (2,000 tokens in a loop, busy machine), and a burst of
 * first requests from 2,000 users pays it 2,000 times in every process.
 */
function verifyWithAny(
  token: string,
  secrets: readonly string[],
  nowMs: number,
): { payload: Record<string, unknown>; secret: string } | undefined {
  const [header = '', body = '', signature = ''] = token.split('.')
  const given = Buffer.from(signature, 'base64url')
  const signed = `${header}.${body}`
  const secret = secrets.find((candidate) => {
    const expected = createHmac('sha256', candidate).update(signed).digest()
    return expected.length === given.length && timingSafeEqual(expected, given)
  })
  if (secret === undefined) return undefined
  const head = decodeJson(header)
  const payload = decodeJson(body)
  if (!isObject(head) || head.alg !== 'HS256' || !isObject(payload)) return undefined
  const now = nowMs / 1000
  const { exp, nbf, iat } = payload
  if (typeof exp === 'number' && exp <= now) return undefined
  if (typeof nbf === 'number' && nbf > now) return undefined
  if (typeof iat === 'number' && iat > now) return undefined
  return { payload, secret }
}

/** Verifies `Authorization: Bearer <JWT>` (HS256 only, `exp` required) and returns who is calling. */
export async function authenticate(header: string | undefined, keys: JwtKeys): Promise<AuthClaims> {
  if (!header) throw unauthenticated('An Authorization: Bearer token is required')
  const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(header.trim())
  const token = match?.[1]
  if (!token) throw unauthenticated('The Authorization header must be "Bearer <JWT>"')
  const secrets = secretsOf(keys)
  const now = Date.now()
  for (const secret of secrets) {
    const known = verifiedFor(secret).get(token)
    if (known && known.expiresAtMs > now) return known.claims
  }
  const verified = verifyWithAny(token, secrets, now)
  if (!verified) throw unauthenticated('The token is invalid, expired or badly signed')
  const parsed = v.safeParse(Claims, verified.payload)
  if (!parsed.success) throw unauthenticated('The token lacks a valid sub, role or exp claim')
  const claims: AuthClaims = { userId: parsed.output.sub, role: parsed.output.role }
  const cache = verifiedFor(verified.secret)
  if (cache.size >= VERIFIED_MAX) cache.clear()
  cache.set(token, { claims, expiresAtMs: parsed.output.exp * 1000 })
  return claims
}

/** This request's caller, verified at most once however many steps ask (rate limit, then the route). */
export function authenticateOnce(c: Context<AppEnv>, keys: JwtKeys): Promise<AuthClaims> {
  let attempt = c.get('authAttempt')
  if (!attempt) {
    attempt = authenticate(c.req.header('Authorization'), keys)
    // Whoever asks handles the failure; this only keeps an unasked-for rejection from being unhandled.
    attempt.catch(() => undefined)
    c.set('authAttempt', attempt)
  }
  return attempt
}

/**
 * Who may call a route, declared in its route.ts and enforced by the route layer before any validation
 * (401, then 403, then 400). `self-or-admin` is for `/v1/users/{userId}/...`: the user themself or an admin.
 */
export type Access = 'public' | 'user' | 'self-or-admin' | 'admin'

/** The path parameter that names the user on `self-or-admin` routes. */
export const SELF_PARAM = 'userId'

/**
 * Sets c.var.auth on every route but public ones, and refuses (403) a non-admin on `admin` routes and on
 * another user's `self-or-admin` route.
 *
 * The path's user id is compared as text, before validation: an id in a path is only valid in its one
 * canonical decimal form (no sign, leading zero or exponent), so the text equals the caller's `sub`
 * exactly when the validated id would, and an id that is not valid cannot be the caller's. A non-admin
 * asking for one thus gets 403 before its 400, as on admin routes.
 */
export const requireAuth =
  (access: Exclude<Access, 'public'>, keys: JwtKeys): MiddlewareHandler<AppEnv> =>
  async (c, next) => {
    const auth = await authenticateOnce(c, keys)
    if (access === 'admin' && auth.role !== 'admin') {
      throw new AppError('FORBIDDEN', 'This route needs the admin role')
    }
    if (
      access === 'self-or-admin' &&
      auth.role !== 'admin' &&
      c.req.param(SELF_PARAM) !== String(auth.userId)
    ) {
      throw new AppError('FORBIDDEN', "You may only access your own account's resources")
    }
    c.set('auth', auth)
    await next()
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
