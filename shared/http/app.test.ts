import { eq, sql } from 'drizzle-orm'
import { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { poolOf } from '../db/client'
import { balances, orders, products } from '../db/schema'
import type { RuntimeDeps } from '../runtime/deps'
import { discoverFunctions } from '../runtime/discover'
import {
  call,
  createTestApp,
  createTestDeps,
  expectProblemShape,
  fundUser,
  insertProduct,
  tokenFor,
  uniqueUserId,
} from '../testing/harness'
import { startOwnRedis } from '../testing/own-redis'
import { createServiceApp } from './app'
import type { AppEnv } from './context'

let deps: RuntimeDeps
let app: Hono<AppEnv>

beforeAll(async () => {
  deps = await createTestDeps()
  const functions = await discoverFunctions()
  const failing = new Hono<AppEnv>()
  failing.get('/v1/test/boom', () => {
    throw new Error('secret-token-value leaked?')
  })
  failing.get('/v1/test/sql', async (c) => {
    await deps.db.execute(sql`SELECT password FROM no_such_table_for_tests`)
    return c.json({})
  })
  // A statement outside any retried transaction that waits out a row lock someone else holds.
  failing.get('/v1/test/lock-wait/:productId', async (c) => {
    const id = Number(c.req.param('productId'))
    const waiter = await poolOf(deps.db).promise().getConnection()
    try {
      await waiter.query('SET SESSION innodb_lock_wait_timeout = 1')
      await waiter.query('UPDATE products SET stock = stock WHERE id = ?', [id])
    } finally {
      await waiter.query('SET SESSION innodb_lock_wait_timeout = 5')
      waiter.release()
    }
    return c.json({})
  })
  app = createServiceApp(deps, [...functions.map((fn) => fn.create(deps)), failing], { routes: functions })
})
afterAll(async () => {
  await deps.close()
})

describe('every request', () => {
  it('echoes a valid X-Request-Id and replaces an invalid one', async () => {
    const kept = await call(app, 'GET', '/health/live', { headers: { 'X-Request-Id': 'abc.DEF_1-2' } })
    expect(kept.headers.get('X-Request-Id')).toBe('abc.DEF_1-2')
    const replaced = await call(app, 'GET', '/health/live', {
      headers: { 'X-Request-Id': 'bad id with spaces' },
    })
    expect(replaced.headers.get('X-Request-Id')).toMatch(/^[0-9a-f-]{36}$/)
    const tooLong = await call(app, 'GET', '/v1/nope', { headers: { 'X-Request-Id': 'a'.repeat(129) } })
    const problem = expectProblemShape(tooLong, 404, 'NOT_FOUND')
    expect(problem.requestId).not.toBe('a'.repeat(129))
  })

  it('answers unknown routes with 404 NOT_FOUND problem JSON', async () => {
    expectProblemShape(await call(app, 'GET', '/v1/does-not-exist'), 404, 'NOT_FOUND')
    expectProblemShape(await call(app, 'GET', '/v1/products/1/extra'), 404, 'NOT_FOUND')
  })

  it('answers a known path asked with another method with 405 and Allow', async () => {
    const res = await call(app, 'DELETE', '/v1/products/12')
    expectProblemShape(res, 405, 'METHOD_NOT_ALLOWED')
    expect(res.headers.get('Allow')).toBe('GET')
    expect((await call(app, 'PUT', '/v1/orders')).headers.get('Allow')).toBe('POST')
  })

  it('answers a lock wait that ran out outside a transaction with 503 and Retry-After, not 500', async () => {
    const id = await insertProduct(deps)
    const holder = await poolOf(deps.db).promise().getConnection()
    try {
      await holder.query('START TRANSACTION')
      await holder.query('SELECT id FROM products WHERE id = ? FOR UPDATE', [id])
      const res = await call(app, 'GET', `/v1/test/lock-wait/${id}`)
      expectProblemShape(res, 503, 'SERVICE_UNAVAILABLE')
      expect(res.headers.get('Retry-After')).toBe('1')
    } finally {
      await holder.query('ROLLBACK')
      holder.release()
    }
  })

  it('turns an unexpected exception into a generic 500 without stack, SQL or message', async () => {
    for (const path of ['/v1/test/boom', '/v1/test/sql']) {
      const res = await call(app, 'GET', path)
      expectProblemShape(res, 500, 'INTERNAL_ERROR')
      expect(res.text).not.toMatch(/secret-token-value|no_such_table|SELECT|at .*\.ts/)
    }
  })

  it('serves liveness, readiness and Prometheus metrics labelled by route pattern', async () => {
    expect((await call(app, 'GET', '/health/live')).status).toBe(200)
    const ready = await call(app, 'GET', '/health/ready')
    expect(ready.body).toEqual({ status: 'ready', checks: { mysql: 'up', redis: 'up' } })
    const id = await insertProduct(deps)
    await call(app, 'GET', `/v1/products/${id}`)
    const metrics = await call(app, 'GET', '/metrics')
    expect(metrics.headers.get('Content-Type')).toContain('text/plain')
    expect(metrics.text).toMatch(
      /http_request_duration_seconds_count\{[^}]*route="\/v1\/products\/:productId"[^}]*\} \d+/,
    )
    expect(metrics.text).not.toContain(`/v1/products/${id}"`)
    expect(metrics.text).toContain('process_cpu_user_seconds_total')
  })

  it('reports not-ready while draining', async () => {
    deps.lifecycle.draining = true
    try {
      const res = await call(app, 'GET', '/health/ready')
      expectProblemShape(res, 503, 'SERVICE_UNAVAILABLE')
    } finally {
      deps.lifecycle.draining = false
    }
  })
})

describe('malformed requests', () => {
  it('never yield a 500 and never change data', async () => {
    const userId = uniqueUserId()
    await fundUser(deps, userId, 50_000)
    const user = await tokenFor(deps, userId)
    const admin = await tokenFor(deps, uniqueUserId(), 'admin')
    const productId = await insertProduct(deps, { name: 'untouchable', price: 1_000, stock: 10 })
    const marker = `malformed-${userId}`
    const json = { 'Content-Type': 'application/json' }
    type Case = {
      method: string
      path: string
      token?: string
      body?: unknown
      raw?: string
      headers?: Record<string, string>
    }
    const cases: Case[] = [
      { method: 'GET', path: '/v1/products/0' },
      { method: 'GET', path: '/v1/products/-1' },
      { method: 'GET', path: '/v1/products/1e3' },
      { method: 'GET', path: '/v1/products/1.5' },
      { method: 'GET', path: '/v1/products/99999999999999999999' },
      { method: 'GET', path: "/v1/products/1'%20OR%201=1" },
      { method: 'GET', path: '/v1/products?limit=1000' },
      { method: 'GET', path: '/v1/products?cursor=%00%01' },
      { method: 'GET', path: `/v1/products?cursor=${'A'.repeat(500)}` },
      { method: 'POST', path: '/v1/admin/products', token: admin, raw: '{"name": "x", ', headers: json },
      { method: 'POST', path: '/v1/admin/products', token: admin, raw: 'null', headers: json },
      { method: 'POST', path: '/v1/admin/products', token: admin, raw: '[]', headers: json },
      { method: 'POST', path: '/v1/admin/products', token: admin, raw: '"string"', headers: json },
      { method: 'POST', path: '/v1/admin/products', token: admin, raw: '', headers: json },
      {
        method: 'POST',
        path: '/v1/admin/products',
        token: admin,
        body: { name: marker, price: '1000', stock: 1 },
      },
      {
        method: 'POST',
        path: '/v1/admin/products',
        token: admin,
        body: { name: marker, price: 1e20, stock: 1 },
      },
      {
        method: 'POST',
        path: '/v1/admin/products',
        token: admin,
        body: { name: marker, price: 1, stock: 1, id: 5 },
      },
      {
        method: 'POST',
        path: '/v1/admin/products',
        token: admin,
        body: { name: marker.repeat(20), price: 1, stock: 1 },
      },
      {
        method: 'POST',
        path: '/v1/admin/products',
        token: admin,
        body: { name: marker, price: 1, stock: 1_000_001 },
      },
      {
        method: 'POST',
        path: '/v1/admin/products',
        token: admin,
        body: { name: marker, price: -5, stock: 1 },
      },
      {
        method: 'POST',
        path: '/v1/admin/products',
        token: admin,
        raw: `{"name":"${marker}","price":1,"stock":1,"__proto__":{"admin":true}}`,
        headers: json,
      },
      {
        method: 'POST',
        path: '/v1/admin/products',
        token: admin,
        raw: `{"name":"${marker}","price":1,"stock":1,"constructor":{}}`,
        headers: json,
      },
      {
        method: 'POST',
        path: '/v1/admin/products',
        token: admin,
        body: { name: marker, price: 1, stock: 1 },
        headers: { 'Content-Type': 'application/xml' },
      },
      {
        method: 'POST',
        path: '/v1/admin/products',
        token: 'not.a.jwt',
        body: { name: marker, price: 1, stock: 1 },
      },
      { method: 'POST', path: '/v1/admin/products', token: user, body: { name: marker, price: 1, stock: 1 } },
      {
        method: 'PATCH',
        path: `/v1/admin/products/${productId}`,
        token: admin,
        body: { stockAdjustment: -11 },
      },
      {
        method: 'PATCH',
        path: `/v1/admin/products/${productId}`,
        token: admin,
        body: { stockAdjustment: 'many' },
      },
      { method: 'PATCH', path: `/v1/admin/products/${productId}`, token: admin, body: { price: null } },
      { method: 'PATCH', path: `/v1/admin/products/${productId}`, token: admin, body: [] },
      {
        method: 'PATCH',
        path: `/v1/admin/products/${productId}`,
        token: admin,
        body: { stockAdjustment: Number.MAX_SAFE_INTEGER },
      },
      { method: 'PATCH', path: '/v1/admin/products/abc', token: admin, body: { price: 5 } },
      { method: 'POST', path: '/v1/orders', token: user, body: { items: [{ productId, quantity: -1 }] } },
      { method: 'POST', path: '/v1/orders', token: user, body: { items: [{ productId, quantity: 11 }] } },
      {
        method: 'POST',
        path: '/v1/orders',
        token: user,
        body: { items: [{ productId: `${productId}`, quantity: 1 }] },
      },
      {
        method: 'POST',
        path: '/v1/orders',
        token: user,
        body: { items: [{ productId, quantity: 1 }], userCouponId: 0 },
      },
      {
        method: 'POST',
        path: '/v1/orders',
        token: user,
        body: { items: [{ productId, quantity: 1 }] },
        headers: { 'Idempotency-Key': 'é' },
      },
      {
        method: 'POST',
        path: '/v1/orders',
        token: user,
        raw: '{"items":[{"productId":1,"quantity":1}]}}',
        headers: json,
      },
      { method: 'POST', path: '/v1/orders/0/cancel', token: user },
      { method: 'GET', path: '/v1/orders/abc', token: user },
      { method: 'GET', path: `/v1/users/${userId}/orders?limit=0`, token: user },
      { method: 'GET', path: '/v1/users/0/orders', token: user },
    ]
    expect(cases.length).toBeGreaterThanOrEqual(30)
    const results = await Promise.all(
      cases.map(async (c) => {
        const headers = { ...(c.headers ?? {}) }
        const res = await call(app, c.method, c.path, {
          token: c.token,
          headers,
          ...(c.raw === undefined ? { body: c.body } : { rawBody: c.raw }),
        })
        return { c, res }
      }),
    )
    for (const { c, res } of results) {
      const label = `${c.method} ${c.path} ${c.raw ?? JSON.stringify(c.body) ?? ''}`
      expect(res.status, label).toBeGreaterThanOrEqual(400)
      expect(res.status, label).toBeLessThan(500)
      expect(res.headers.get('Content-Type'), label).toContain('application/problem+json')
    }
    const [untouched] = await deps.db.select().from(products).where(eq(products.id, productId))
    expect(untouched).toMatchObject({ name: 'untouchable', price: 1_000, stock: 10, stockAdjustments: 0 })
    const created = await deps.db
      .select()
      .from(products)
      .where(sql`${products.name} LIKE ${`${marker}%`}`)
    expect(created).toEqual([])
    const [balance] = await deps.db.select().from(balances).where(eq(balances.userId, userId))
    expect(balance?.balance).toBe(50_000)
    expect(await deps.db.select().from(orders).where(eq(orders.userId, userId))).toEqual([])
  })
})

describe('when Redis is down', () => {
  it('product reads keep answering from MySQL and readiness says which dependency is down', async () => {
    const redis = await startOwnRedis()
    const own = await createTestDeps({ REDIS_URL: redis.url })
    try {
      const ownApp = createTestApp(own, await discoverFunctions())
      const id = await insertProduct(own, { name: 'resilient', stock: 4 })
      expect((await call(ownApp, 'GET', `/v1/products/${id}`)).status).toBe(200)
      await redis.stop()
      const read = await call(ownApp, 'GET', `/v1/products/${id}`)
      expect(read.status).toBe(200)
      expect(read.body).toMatchObject({ id, name: 'resilient', stock: 4 })
      expect((await call(ownApp, 'GET', '/v1/products?limit=1')).status).toBe(200)
      const ready = await call(ownApp, 'GET', '/health/ready')
      const problem = expectProblemShape(ready, 503, 'SERVICE_UNAVAILABLE')
      expect(problem.checks).toEqual({ mysql: 'up', redis: 'down' })
    } finally {
      await own.close()
      await redis.stop()
    }
  })
})
