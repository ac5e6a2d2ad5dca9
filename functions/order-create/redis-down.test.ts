import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
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
import createOrderCancelApp from '../order-cancel/handler'
import createOrderCreateApp from './handler'

// SPEC §4: with Redis down, orders stay correct because MySQL's guarded updates decide; events wait in
// the outbox. A Redis of this file's own is killed; the shared one is never touched.
const port = 21_000 + Math.floor(Math.random() * 20_000)
let redis: ChildProcess
let deps: RuntimeDeps
let app: ReturnType<typeof createTestApp>

beforeAll(async () => {
  redis = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  })
  for (let tries = 0; ; tries++) {
    try {
      deps = await createTestDeps({ REDIS_URL: `redis://127.0.0.1:${port}` })
      break
    } catch (error) {
      if (tries > 50) throw error
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  app = createTestApp(deps, [createOrderCreateApp, createOrderCancelApp])
})
afterAll(async () => {
  redis?.kill('SIGKILL')
  await deps?.close()
})

describe('orders while Redis is down', () => {
  it('are placed, refused and cancelled exactly as MySQL decides, promptly', async () => {
    const userId = uniqueUserId()
    await fundUser(deps, userId, 3_000)
    const token = await tokenFor(deps, userId)
    const productId = await insertProduct(deps, { price: 1_000, stock: 2 })
    redis.kill('SIGKILL')
    await once(redis, 'exit')

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
