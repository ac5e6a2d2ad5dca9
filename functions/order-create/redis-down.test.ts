import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkInvariants } from '../../shared/invariants/check'
import type { RuntimeDeps } from '../../shared/runtime/deps'
import {
  call,
  createTestApp,
  createTestDeps,
  fundUser,
  insertProduct,
  tokenFor,
  uniqueUserId,
} from '../../shared/testing/harness'
import { type OwnRedis, startOwnRedis } from '../../shared/testing/own-redis'
import createOrderCancelApp from '../order-cancel/handler'
import createOrderCreateApp from './handler'

// docs/invariants.md: with Redis down, orders stay correct because MySQL's guarded updates decide; events wait in
// the outbox. A Redis of this file's own is stopped; the shared one is never touched.
let redis: OwnRedis
let deps: RuntimeDeps
let app: ReturnType<typeof createTestApp>

beforeAll(async () => {
  redis = await startOwnRedis()
  deps = await createTestDeps({ REDIS_URL: redis.url })
  app = createTestApp(deps, [createOrderCreateApp, createOrderCancelApp])
})
afterAll(async () => {
  await deps?.close()
  await redis?.stop()
})

describe('orders while Redis is down', () => {
  it('are placed, refused and cancelled exactly as MySQL decides, promptly', async () => {
    const userId = uniqueUserId()
    await fundUser(deps, userId, 3_000)
    const token = await tokenFor(deps, userId)
    const productId = await insertProduct(deps, { price: 1_000, stock: 2 })
    await redis.stop()

    const started = Date.now()
    const headers = { 'Idempotency-Key': 'while-redis-is-down' }
    const first = await call(app, 'POST', '/v1/orders', {
      token,
      headers,
      body: { items: [{ productId, quantity: 2 }] },
    })
    expect(first.status).toBe(201)
    const replay = await call(app, 'POST', '/v1/orders', {
      token,
      headers,
      body: { items: [{ productId, quantity: 2 }] },
    })
    expect(replay.status).toBe(201)
    expect(replay.headers.get('Idempotent-Replayed')).toBe('true')
    const refused = await call(app, 'POST', '/v1/orders', {
      token,
      body: { items: [{ productId, quantity: 1 }] },
    })
    expect((refused.body as { code: string }).code).toBe('INSUFFICIENT_STOCK')
    const orderId = (first.body as { id: number }).id
    const cancelled = await call(app, 'POST', `/v1/orders/${orderId}/cancel`, { token })
    expect(cancelled.status).toBe(200)
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(await checkInvariants(deps.db, { productIds: [productId], userIds: [userId] })).toEqual([])
  })
})
