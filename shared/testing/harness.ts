import { randomInt } from 'node:crypto'
import type { Hono } from 'hono'
import { loadConfig } from '../config'
import { products } from '../db/schema'
import type { Deps } from '../deps'
import { createServiceApp } from '../http/app'
import { mintToken } from '../http/auth'
import type { AppEnv } from '../http/context'
import { buildDeps, type RuntimeDeps } from '../runtime/deps'
import { TEST_ENV } from './env'

export const testConfig = (overrides: Record<string, string> = {}) =>
  loadConfig({ ...process.env, ...TEST_ENV, ...overrides })

/** Real MySQL and Redis connections for one test file; close them in afterAll. */
export const createTestDeps = (overrides: Record<string, string> = {}): Promise<RuntimeDeps> =>
  buildDeps(testConfig(overrides), 'test')

export const createTestApp = (deps: Deps, factories: Array<(deps: Deps) => Hono<AppEnv>>) =>
  createServiceApp(
    deps,
    factories.map((create) => create(deps)),
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

/** The fields every problem JSON body has (SPEC §1). */
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
