import { sql } from 'drizzle-orm'
import fc from 'fast-check'
import type { Hono } from 'hono'
import { sign } from 'hono/jwt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ERROR_CODES } from '../errors'
import type { RuntimeDeps } from '../runtime/deps'
import { discoverFunctions, type HttpFunction } from '../runtime/discover'
import { createIsolatedDatabase } from '../testing/events'
import {
  call,
  createTestApp,
  createTestDeps,
  fundUser,
  giveCoupon,
  insertProduct,
  type TestResponse,
  tokenFor,
  uniqueUserId,
} from '../testing/harness'
import type { AppEnv } from './context'

/*
 * Generated hostile input against every route that functions/ declares (found as npm start finds them):
 * bodies, paths, query strings and headers made by fast-check, some shaped like the route's own schema
 * and some not at all. Whatever comes in: never a 5xx, every error is problem JSON that leaks nothing,
 * and a 4xx changes no row in MySQL. The database is this file's own, so a checksum of every table is
 * exactly "the rows the route could touch".
 */

const RUNS_PER_ROUTE = Number(process.env.HOSTILE_RUNS ?? 100)

let database: Awaited<ReturnType<typeof createIsolatedDatabase>>
let deps: RuntimeDeps
let app: Hono<AppEnv>
// Found at collection time, so that every route is a test of its own.
const functions: HttpFunction[] = await discoverFunctions()
let tables: string[]

type Fixtures = {
  userId: number
  otherUserId: number
  productIds: number[]
  couponIds: number[]
  userCouponIds: number[]
  orderIds: number[]
  tokens: Array<string | undefined>
}
let fixtures: Fixtures

beforeAll(async () => {
  database = await createIsolatedDatabase('hostile')
  deps = await createTestDeps({ DATABASE_URL: database.url })
  app = createTestApp(deps, functions)

  const userId = uniqueUserId()
  const otherUserId = uniqueUserId()
  await fundUser(deps, userId, 500_000)
  await fundUser(deps, otherUserId, 1_000)
  const productIds = [
    await insertProduct(deps, { price: 1_000, stock: 1_000 }),
    await insertProduct(deps, { price: 99_000_000, stock: 1 }),
    await insertProduct(deps, { price: 500, stock: 0 }),
  ]
  const mine = await giveCoupon(deps, userId, { type: 'PERCENT', value: 10 })
  const theirs = await giveCoupon(deps, otherUserId, { type: 'FIXED', value: 100 })
  const userToken = await tokenFor(deps, userId)
  const order = await call(app, 'POST', '/v1/orders', {
    token: userToken,
    body: { items: [{ productId: productIds[0], quantity: 1 }] },
  })
  expect(order.status).toBe(201)
  const adminToken = await tokenFor(deps, uniqueUserId(), 'admin')
  const issuable = await call(app, 'POST', '/v1/admin/coupons', {
    token: adminToken,
    body: { name: 'hostile', type: 'FIXED', value: 100, totalQuantity: 1_000, validDays: 7 },
  })
  expect(issuable.status).toBe(201)
  const secret = deps.config.jwtSecret
  const now = Math.floor(Date.now() / 1000)
  fixtures = {
    userId,
    otherUserId,
    productIds,
    couponIds: [mine.couponId, theirs.couponId, (issuable.body as { id: number }).id],
    userCouponIds: [mine.userCouponId, theirs.userCouponId],
    orderIds: [(order.body as { id: number }).id],
    // The user's, another user's, an admin's, then tokens that must all be refused.
    tokens: [
      userToken,
      await tokenFor(deps, otherUserId),
      adminToken,
      undefined,
      'garbage',
      await sign({ sub: String(userId), role: 'user', exp: now - 60 }, secret, 'HS256'),
      await sign(
        { sub: String(userId), role: 'user', exp: now + 600 },
        'another-secret-of-32-characters!!',
        'HS256',
      ),
      await sign({ sub: '0', role: 'superuser', exp: now + 600 }, secret, 'HS256'),
      await sign({ sub: '99999999999999999999', role: 'admin', exp: now + 600 }, secret, 'HS256'),
      await sign({ sub: String(userId), role: 'admin' }, secret, 'HS256'),
    ],
  }
  const [rows] = (await deps.db.execute(
    sql`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = ${database.name} AND table_name NOT LIKE '%drizzle%'`,
  )) as unknown as [Array<{ name: string }>]
  tables = rows.map((row) => row.name)
})

afterAll(async () => {
  if (process.env.HOSTILE_STATS) {
    for (const [name, seen] of outcomes) console.log(name, JSON.stringify(Object.fromEntries(seen)))
  }
  if (deps) await database.drop(deps.db)
  await deps?.close()
})

/** Every table's checksum: equal before and after means no row was added, removed or changed. */
async function snapshot(): Promise<string> {
  const [rows] = (await deps.db.execute(
    sql.raw(`CHECKSUM TABLE ${tables.map((t) => `\`${t}\``).join(', ')}`),
  )) as unknown as [Array<{ Table: string; Checksum: number | string }>]
  return rows.map((row) => `${row.Table}=${row.Checksum}`).join(' ')
}

// ——— generators ———

/** Header values a fetch Headers object accepts: latin-1 without control characters. */
const headerText = (maxLength: number) =>
  fc.string({
    unit: fc.integer({ min: 0x20, max: 0xff }).map((code) => String.fromCharCode(code)),
    maxLength,
  })

const hostileNumbers = fc.constantFrom(
  0,
  -1,
  -0,
  1.5,
  2 ** 31,
  2 ** 53,
  Number.MAX_SAFE_INTEGER,
  Number.MAX_SAFE_INTEGER + 2,
  1e308,
  -1e308,
  Number.MIN_VALUE,
)

const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.string({ maxLength: 40 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  hostileNumbers,
  fc.constant({}),
  fc.constant([]),
  fc.jsonValue({ maxDepth: 2 }),
)

type Schemaish = {
  type?: string
  pipe?: Array<{ kind?: string; type?: string; requirement?: unknown }>
  wrapped?: Schemaish
  entries?: Record<string, Schemaish>
  item?: Schemaish
  options?: unknown[]
}

const requirement = (schema: Schemaish, type: string) =>
  schema.pipe?.find((action) => action.kind === 'validation' && action.type === type)?.requirement

/** Ids that exist in this database, by the name of the field or parameter that holds one. */
function knownIds(name: string): number[] {
  const byName: Record<string, number[]> = {
    productId: fixtures.productIds,
    couponId: fixtures.couponIds,
    userCouponId: fixtures.userCouponIds,
    orderId: fixtures.orderIds,
    userId: [fixtures.userId, fixtures.otherUserId],
  }
  return (
    byName[name] ?? [fixtures.userId, ...fixtures.productIds, ...fixtures.couponIds, ...fixtures.orderIds]
  )
}

type Mode = 'hostile' | 'wellFormed'

/**
 * Values shaped by a route's valibot schema: objects with its fields, arrays of its items, numbers
 * within its bounds, its picklist's options. `wellFormed` stays within the schema (so that requests reach
 * the handler and its refusals); `hostile` also puts numbers on and past the bounds, drops fields, adds
 * unknown ones and now and then replaces any part with anything at all.
 */
function fromSchema(schema: Schemaish | undefined, mode: Mode, name = '', depth = 0): fc.Arbitrary<unknown> {
  if (schema === undefined || depth > 4) return anyValue
  const hostile = mode === 'hostile'
  const base = schema.pipe?.[0] && schema.pipe[0] !== schema ? (schema.pipe[0] as Schemaish) : schema
  const inner = (child: Schemaish | undefined, childName = name) =>
    fromSchema(child, mode, childName, depth + 1)
  let shaped: fc.Arbitrary<unknown>
  switch (base.type) {
    case 'optional':
    case 'nullable':
    case 'nullish':
      // Absent one time in two (fc.option's freq is the odds of the nil value).
      shaped = fc.option(inner(base.wrapped), { nil: undefined, freq: 2 })
      break
    case 'object':
    case 'strict_object':
    case 'loose_object': {
      const entries = Object.fromEntries(
        Object.entries(base.entries ?? {}).map(([key, entry]) => [key, inner(entry, key)]),
      )
      shaped = hostile
        ? fc
            .tuple(
              fc.oneof(
                { weight: 4, arbitrary: fc.record(entries) },
                { weight: 1, arbitrary: fc.record(entries, { requiredKeys: [] }) },
              ),
              fc.oneof(
                { weight: 4, arbitrary: fc.constant({}) },
                {
                  weight: 1,
                  arbitrary: fc.dictionary(fc.string({ maxLength: 12 }), anyValue, { maxKeys: 2 }),
                },
              ),
            )
            .map(([record, extra]) => ({ ...extra, ...record }))
        : fc.record(entries)
      break
    }
    case 'array':
      shaped = hostile
        ? fc.oneof(
            { weight: 4, arbitrary: fc.array(inner(base.item), { maxLength: 3 }) },
            { weight: 1, arbitrary: fc.array(inner(base.item), { maxLength: 55 }) },
          )
        : fc.array(inner(base.item), { minLength: 1, maxLength: 3 })
      break
    case 'number': {
      const min = Number(requirement(schema, 'min_value') ?? -1e9)
      const max = Number(requirement(schema, 'max_value') ?? 1e9)
      const inRange = fc.integer({ min: Math.max(min, -(2 ** 31)), max: Math.min(max, 2 ** 31) })
      const ids = name.endsWith('Id') ? fc.constantFrom(...knownIds(name)) : undefined
      shaped = fc.oneof(
        { weight: ids ? 1 : 6, arbitrary: inRange },
        ...(ids ? [{ weight: 6, arbitrary: ids }] : []),
        ...(hostile
          ? [
              { weight: 1, arbitrary: fc.constantFrom(min, max, min - 1, max + 1) },
              { weight: 1, arbitrary: hostileNumbers },
            ]
          : []),
      )
      break
    }
    case 'string': {
      const dates = fc
        .date({
          min: new Date(hostile ? '1999-01-01' : '2001-01-01'),
          max: new Date('2100-01-01'),
          noInvalidDate: true,
        })
        .map((d) => d.toISOString())
      const words = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9 ]{0,29}$/)
      if (!hostile) shaped = name.endsWith('At') ? dates : words
      else if (name.endsWith('At')) {
        shaped = fc.oneof(
          { weight: 4, arbitrary: dates },
          { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
        )
      } else {
        shaped = fc.oneof(
          { weight: 4, arbitrary: words },
          { weight: 2, arbitrary: fc.string({ maxLength: 300, unit: 'grapheme' }) },
          { weight: 1, arbitrary: fc.constantFrom('', ' ', '\u0000', '\u202e', 'a'.repeat(2_001)) },
        )
      }
      break
    }
    case 'picklist':
      shaped = fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom(...(base.options ?? [''])) },
        ...(hostile ? [{ weight: 1, arbitrary: fc.string({ maxLength: 10 }) }] : []),
      )
      break
    default:
      shaped = anyValue
  }
  return hostile ? fc.oneof({ weight: 24, arbitrary: shaped }, { weight: 1, arbitrary: anyValue }) : shaped
}

/** A path parameter: an id of this database, any number, or text no id looks like. */
const pathSegment = (name: string) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...knownIds(name)).map(String) },
    { weight: 2, arbitrary: fc.nat().map(String) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        '0',
        '-1',
        '1e3',
        '1.5',
        '01',
        '12345678901234567890',
        '9007199254740993',
        '%00',
        '%ff',
        '%',
        '%2e%2e',
        '..',
        ' 1',
        '0x1f',
        'null',
      ),
    },
    { weight: 2, arbitrary: fc.string({ maxLength: 40, unit: 'grapheme' }).map(encodeURIComponent) },
  )

const queryString = (schema: Schemaish | undefined) => {
  const base = (schema?.pipe?.[0] as Schemaish | undefined) ?? schema
  const known = Object.keys(base?.entries ?? {})
  const key = fc.oneof(fc.constantFrom(...known, 'limit', 'cursor', 'status'), fc.string({ maxLength: 8 }))
  const value = fc.oneof(
    fc.constantFrom('1', '100', '101', '0', '-5', 'AVAILABLE', 'USED', 'EXPIRED', 'aWQ6MQ', 'aWQ6MA', ''),
    fc.string({ maxLength: 70, unit: 'grapheme' }),
  )
  return fc
    .array(fc.tuple(key, value), { maxLength: 4 })
    .map((pairs) =>
      pairs.length === 0
        ? ''
        : `?${pairs.map(([k, val]) => `${encodeURIComponent(k)}=${encodeURIComponent(val)}`).join('&')}`,
    )
}

const rawBody = (schema: Schemaish | undefined) =>
  fc.oneof(
    { weight: 8, arbitrary: fromSchema(schema, 'hostile').map((value) => JSON.stringify(value) ?? '') },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        '',
        '{',
        'null',
        '[]',
        '"text"',
        '{"__proto__":{"admin":true}}',
        '{"constructor":{"prototype":{"x":1}}}',
        '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
        `"${'x'.repeat(70_000)}"`,
        '\uFEFF{}',
      ),
    },
  )

type GeneratedRequest = {
  method: string
  path: string
  body: string | undefined
  headers: Record<string, string>
  token: string | undefined
}

function hostileRequest(fn: HttpFunction): fc.Arbitrary<GeneratedRequest> {
  const route = fn.route
  const segments = route.path
    .split('/')
    .map((part) => (part.startsWith(':') ? pathSegment(part.slice(1)) : fc.constant(part)))
  return (
    fc
      .record({
        method: fc.oneof(
          { weight: 8, arbitrary: fc.constant(route.method) },
          {
            weight: 1,
            arbitrary: fc.constantFrom('GET', 'POST', 'PATCH', 'PUT', 'DELETE', 'HEAD', 'OPTIONS'),
          },
        ),
        path: fc
          .tuple(fc.tuple(...segments), queryString(route.query as Schemaish | undefined), fc.nat(9))
          .map(([parts, query, slash]) => `${parts.join('/')}${slash === 0 ? '/' : ''}${query}`),
        // Without a body one time in twelve (fc.option's freq is the odds of the nil value).
        body: fc
          .option(rawBody(route.body as Schemaish | undefined), { freq: 12 })
          .map((b) => b ?? undefined),
        headers: fc.record(
          {
            'Content-Type': fc.oneof(
              { weight: 12, arbitrary: fc.constant('application/json') },
              {
                weight: 3,
                arbitrary: fc.constantFrom(
                  'application/json; charset=utf-8',
                  'application/problem+json',
                  'text/plain',
                  'application/x-www-form-urlencoded',
                  'multipart/form-data; boundary=x',
                  '',
                ),
              },
              { weight: 1, arbitrary: headerText(40) },
            ),
            'Idempotency-Key': fc.oneof(
              { weight: 4, arbitrary: fc.uuid() },
              { weight: 2, arbitrary: fc.constantFrom('same-key', 'other-key') },
              { weight: 1, arbitrary: headerText(300) },
            ),
            'X-Request-Id': headerText(200),
            Accept: fc.constantFrom('*/*', 'text/html', 'application/xml'),
          },
          { requiredKeys: ['Content-Type'] },
        ),
        // Mostly the user's or an admin's, so that requests get past authentication.
        token: fc.oneof(
          { weight: 6, arbitrary: fc.constant(fixtures.tokens[0]) },
          { weight: 4, arbitrary: fc.constant(fixtures.tokens[2]) },
          { weight: 4, arbitrary: fc.constantFrom(...fixtures.tokens) },
        ),
      })
      // A fetch Request cannot carry a body with GET or HEAD (an HTTP client could, and the body is unread).
      .map((request) =>
        request.method === 'GET' || request.method === 'HEAD' ? { ...request, body: undefined } : request,
      )
  )
}

/** A request as the route wants it (method, exact path, JSON, a valid token), with a body of its schema. */
function wellFormedRequest(fn: HttpFunction): fc.Arbitrary<GeneratedRequest> {
  const route = fn.route
  const segments = route.path
    .split('/')
    .map((part) =>
      part.startsWith(':') ? fc.constantFrom(...knownIds(part.slice(1))).map(String) : fc.constant(part),
    )
  return fc.record({
    method: fc.constant(route.method),
    path: fc.tuple(...segments).map((parts) => parts.join('/')),
    body: route.body
      ? fromSchema(route.body as Schemaish, 'wellFormed').map((value) => JSON.stringify(value))
      : fc.constant(undefined),
    headers: fc.record(
      { 'Content-Type': fc.constant('application/json'), 'Idempotency-Key': fc.uuid() },
      { requiredKeys: ['Content-Type'] },
    ),
    token: fc.constantFrom(fixtures.tokens[0], fixtures.tokens[2]),
  })
}

/** One request in three as the route wants it with a generated body; the rest hostile all over. */
const requestFor = (fn: HttpFunction) =>
  fc.oneof({ weight: 1, arbitrary: wellFormedRequest(fn) }, { weight: 2, arbitrary: hostileRequest(fn) })

/** Every failure is RFC 9457 problem JSON with a known code, its own status and the request id (docs/api.md). */
function problemViolations(request: GeneratedRequest, response: TestResponse): string[] {
  const problems: string[] = []
  if (response.status >= 500) problems.push(`status ${response.status}`)
  const leak = /Failed query|\bat [\w.<>]+ \(|SQLSTATE|\bER_[A-Z_]+|node_modules|mysql2|ioredis/i
  if (leak.test(response.text)) problems.push('the body leaks internals')
  if (response.status < 400 || request.method === 'HEAD') return problems
  if (!response.headers.get('Content-Type')?.startsWith('application/problem+json')) {
    problems.push(`Content-Type ${response.headers.get('Content-Type')}`)
  }
  const body = response.body as Record<string, unknown> | undefined
  const code = body?.code
  if (typeof code !== 'string' || !(code in ERROR_CODES)) problems.push(`unknown code ${String(code)}`)
  if (body?.status !== response.status) problems.push(`body status ${String(body?.status)}`)
  for (const field of ['type', 'title', 'detail', 'instance', 'requestId']) {
    if (typeof body?.[field] !== 'string') problems.push(`no ${field}`)
  }
  if (body?.requestId !== response.headers.get('X-Request-Id'))
    problems.push('requestId differs from X-Request-Id')
  return problems
}

/** Answers by route and outcome, to show (and assert) that generated requests get past validation. */
const outcomes = new Map<string, Map<string, number>>()

async function send(request: GeneratedRequest): Promise<TestResponse> {
  const response = await call(app, request.method, request.path, {
    ...(request.body === undefined ? {} : { rawBody: request.body }),
    ...(request.token === undefined ? {} : { token: request.token }),
    headers: request.headers,
  })
  // What a success made becomes a known id for the routes tested after it (orders to cancel, and so on).
  const made = response.body as { id?: unknown; userCouponId?: unknown } | undefined
  if (response.status === 201 && typeof made?.userCouponId === 'number') {
    fixtures.userCouponIds.push(made.userCouponId)
  } else if (response.status === 201 && typeof made?.id === 'number') {
    if (request.path.startsWith('/v1/orders')) fixtures.orderIds.push(made.id)
    else if (request.path.startsWith('/v1/admin/products')) fixtures.productIds.push(made.id)
    else if (request.path.startsWith('/v1/admin/coupons')) fixtures.couponIds.push(made.id)
  }
  return response
}

describe('hostile input to every route', () => {
  it('covers the routes npm start serves, the keyed writes among them', () => {
    const names = functions.map((fn) => fn.name)
    for (const name of ['product-list', 'order-create', 'balance-charge', 'coupon-issue', 'order-cancel']) {
      expect(names).toContain(name)
    }
    // The tables whose checksums stand for "nothing changed".
    for (const table of ['orders', 'balances', 'balance_ledger', 'products', 'user_coupons', 'outbox']) {
      expect(tables).toContain(table)
    }
  })

  // fast-check prints the smallest failing request it found and the seed to run it again.
  it.each(functions.map((fn) => [fn.name, fn] as const))(
    '%s: never a 5xx, always problem JSON, nothing changed on a 4xx',
    async (_name, fn) => {
      await fc.assert(
        fc.asyncProperty(requestFor(fn), async (request) => {
          const before = await snapshot()
          const response = await send(request)
          const code = (response.body as { code?: unknown } | undefined)?.code
          const label = `${response.status}${typeof code === 'string' ? ` ${code}` : ''}`
          const seen = outcomes.get(fn.name) ?? new Map<string, number>()
          seen.set(label, (seen.get(label) ?? 0) + 1)
          outcomes.set(fn.name, seen)
          const problems = problemViolations(request, response)
          if (response.status >= 400 && response.status < 500) {
            const after = await snapshot()
            if (after !== before) problems.push(`a ${response.status} changed rows: ${before} → ${after}`)
          }
          if (problems.length > 0) {
            throw new Error(
              `${request.method} ${request.path} → ${response.status} ${response.text.slice(0, 300)}\n  ${problems.join('; ')}`,
            )
          }
        }),
        { numRuns: RUNS_PER_ROUTE },
      )
      // The generators must also get past the guards and validation to the handler (a success or one of
      // its own refusals), or "nothing changed on a 4xx" would only ever have been checked on requests
      // refused before anything could change.
      const seen = [...(outcomes.get(fn.name) ?? new Map<string, number>()).keys()]
      const guard =
        /^\d+( (VALIDATION_FAILED|UNAUTHENTICATED|FORBIDDEN|NOT_FOUND|METHOD_NOT_ALLOWED|UNSUPPORTED_MEDIA_TYPE|PAYLOAD_TOO_LARGE))?$/
      const reached = seen.filter((label) => label.startsWith('2') || !guard.test(label))
      expect(reached, `${fn.name} answered only ${seen.join(', ')}`).not.toEqual([])
    },
    120_000,
  )

  it('answers unknown paths and methods with problem JSON', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ maxLength: 12, unit: 'grapheme' }).map(encodeURIComponent), { maxLength: 6 }),
        fc.constantFrom('GET', 'POST', 'PATCH', 'PUT', 'DELETE', 'OPTIONS'),
        async (parts, method) => {
          const request: GeneratedRequest = {
            method,
            path: `/${['v1', ...parts].join('/')}`,
            body: undefined,
            headers: {},
            token: fixtures.tokens[0],
          }
          const response = await send(request)
          expect(problemViolations(request, response)).toEqual([])
        },
      ),
      { numRuns: 100 },
    )
  })
})
