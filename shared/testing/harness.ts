import { randomInt } from 'node:crypto'
import { eq, sql } from 'drizzle-orm'
import type { Hono } from 'hono'
import { afterAll, beforeAll } from 'vitest'
import { charge, ensureAccount } from '../balance/balance'
import { loadConfig } from '../config'
import { DAY_MS } from '../coupons/coupons'
import { coupons, products, userCoupons } from '../db/schema'
import { inTransaction } from '../db/transaction'
import type { Deps } from '../deps'
import { createServiceApp } from '../http/app'
import { mintToken } from '../http/auth'
import type { AppEnv } from '../http/context'
import type { RouteDef } from '../http/route'
import { buildDeps, type RuntimeDeps } from '../runtime/deps'
import { TEST_ENV } from './env'

export const testConfig = (overrides: Record<string, string> = {}) =>
  loadConfig({ ...process.env, ...TEST_ENV, ...overrides })

/** Real MySQL and Redis connections for one test file; close them in afterAll. */
export const createTestDeps = (overrides: Record<string, string> = {}): Promise<RuntimeDeps> =>
  buildDeps(testConfig(overrides), 'test')

type AppFactory = (deps: Deps) => Hono<AppEnv>

/**
 * The service app around the given functions. A `{ name, route, create }` entry (what
 * discoverFunctions returns) is also documented at /openapi.json and /docs; a bare factory is only served.
 */
export const createTestApp = (
  deps: Deps,
  functions: Array<AppFactory | { name: string; route: RouteDef; create: AppFactory }>,
) =>
  createServiceApp(
    deps,
    functions.map((fn) => (typeof fn === 'function' ? fn(deps) : fn.create(deps))),
    { routes: functions.flatMap((fn) => (typeof fn === 'function' ? [] : [fn])) },
  )

/**
 * A user id no other test (or earlier run) uses: tests share one database and never rely on it being
 * empty, so each makes its own users, products and coupons.
 */
export const uniqueUserId = () => randomInt(1_000_000, 2 ** 47)

export const tokenFor = (
  deps: Pick<Deps, 'config'>,
  userId: number,
  role: 'user' | 'admin' = 'user',
  ttlSeconds = 600,
) => mintToken(deps.config.jwtSecret, { sub: userId, role, ttlSeconds })

export type TestResponse = { status: number; headers: Headers; body: unknown; text: string }

/** A request through the app's fetch, as a client would send it. */
export async function call(
  app: Hono<AppEnv>,
  method: string,
  path: string,
  options: { body?: unknown; rawBody?: string; token?: string; headers?: Record<string, string> } = {},
): Promise<TestResponse> {
  const headers = new Headers(options.headers)
  if (options.token) headers.set('Authorization', `Bearer ${options.token}`)
  let body: string | undefined
  if (options.rawBody !== undefined) body = options.rawBody
  else if (options.body !== undefined) {
    body = JSON.stringify(options.body)
    if (!headers.has('Content-Type')) headers.set('Content-Type', 'application/json')
  }
  // As a real HTTP/1.1 client would: the app's 415 and 413 guards read these headers.
  if (body !== undefined) headers.set('Content-Length', String(Buffer.byteLength(body)))
  const response = await app.request(path, { method, headers, body })
  const text = await response.text()
  let parsed: unknown = text
  try {
    parsed = text === '' ? undefined : JSON.parse(text)
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, headers: response.headers, body: parsed, text }
}

/** The fields every problem JSON body has (docs/api.md). */
export function expectProblemShape(response: TestResponse, status: number, code: string) {
  const problem = response.body as Record<string, unknown>
  const ok =
    response.status === status &&
    response.headers.get('Content-Type')?.startsWith('application/problem+json') === true &&
    problem?.code === code &&
    problem.status === status &&
    typeof problem.type === 'string' &&
    typeof problem.title === 'string' &&
    typeof problem.detail === 'string' &&
    typeof problem.instance === 'string' &&
    typeof problem.requestId === 'string' &&
    problem.requestId === response.headers.get('X-Request-Id')
  if (!ok) {
    throw new Error(
      `expected problem ${status} ${code}, got ${response.status} ${response.text.slice(0, 500)}`,
    )
  }
  return problem
}

/** A product of this test's own, written straight to MySQL. */
export async function insertProduct(
  deps: Pick<Deps, 'db'>,
  values: { name?: string; price?: number; stock?: number; description?: string } = {},
) {
  const now = new Date()
  const stock = values.stock ?? 10
  const [row] = await deps.db
    .insert(products)
    .values({
      name: values.name ?? `test product ${randomInt(1e9)}`,
      description: values.description ?? 'made by a test',
      price: values.price ?? 1_000,
      stock,
      initialStock: stock,
      createdAt: now,
      updatedAt: now,
    })
    .$returningId()
  if (!row) throw new Error('product insert returned no id')
  return row.id
}

/** Gives a fresh user `amount` won through the real charge path (ledger entry included). */
export async function fundUser(deps: Pick<Deps, 'db'>, userId: number, amount: number) {
  await ensureAccount(deps.db, userId)
  if (amount > 0) await inTransaction(deps.db, (tx) => charge(tx, userId, amount))
}

/** A coupon of this test's own, already issued to `userId` (issuing itself is tested by coupon-issue). */
export async function giveCoupon(
  deps: Pick<Deps, 'db'>,
  userId: number,
  terms: { type: 'FIXED' | 'PERCENT'; value: number; minOrderAmount?: number; expiresAt?: Date },
) {
  const now = new Date()
  return deps.db.transaction(async (tx) => {
    const [coupon] = await tx
      .insert(coupons)
      .values({
        name: `test coupon ${randomInt(1e9)}`,
        type: terms.type,
        value: terms.value,
        minOrderAmount: terms.minOrderAmount ?? 0,
        totalQuantity: 1,
        issuedQuantity: 1,
        validDays: 30,
        createdAt: now,
      })
      .$returningId()
    if (!coupon) throw new Error('coupon insert returned no id')
    const [userCoupon] = await tx
      .insert(userCoupons)
      .values({
        couponId: coupon.id,
        userId,
        issuedAt: now,
        expiresAt: terms.expiresAt ?? new Date(now.getTime() + 30 * 86_400_000),
      })
      .$returningId()
    if (!userCoupon) throw new Error('user coupon insert returned no id')
    return { couponId: coupon.id, userCouponId: userCoupon.id }
  })
}

/**
 * A holder of `couponId` committed in MySQL directly (issued_quantity + 1 and the user coupon), behind
 * the back of Redis's issuing state: what an issue's transaction writes, without its Redis side.
 */
export async function holderInMysql(deps: Pick<Deps, 'db'>, couponId: number, userId: number) {
  const now = new Date()
  await deps.db.transaction(async (tx) => {
    await tx
      .update(coupons)
      .set({ issuedQuantity: sql`${coupons.issuedQuantity} + 1` })
      .where(eq(coupons.id, couponId))
    await tx
      .insert(userCoupons)
      .values({ couponId, userId, issuedAt: now, expiresAt: new Date(now.getTime() + DAY_MS) })
  })
}

/**
 * Real dependencies and the app of `factories` for one test file: made before its first test and closed
 * after its last. Read `t.deps` and `t.app` inside hooks and tests, not at import time.
 */
export function useTestApp(
  factories: Parameters<typeof createTestApp>[1],
  overrides: Record<string, string> = {},
) {
  const t = {} as { deps: RuntimeDeps; app: Hono<AppEnv> }
  beforeAll(async () => {
    t.deps = await createTestDeps(overrides)
    t.app = createTestApp(t.deps, factories)
  })
  afterAll(async () => {
    await t.deps?.close()
  })
  return t
}
