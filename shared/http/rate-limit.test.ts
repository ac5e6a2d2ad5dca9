import { randomBytes } from 'node:crypto'
import { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import createProductGetApp from '../../functions/product-get/handler'
import type { Deps } from '../deps'
import { connectRedis, createRedis, redisWithScripts } from '../redis/client'
import { type RuntimeDeps, redisKeyPrefix } from '../runtime/deps'
import {
  call,
  createTestApp,
  createTestDeps,
  expectProblemShape,
  insertProduct,
  tokenFor,
  uniqueUserId,
} from '../testing/harness'
import { startOwnRedis } from '../testing/own-redis'
import type { AppEnv } from './context'

/** 1 token a second refills slowly enough that a burst of 5 can never be topped up mid-test. */
const LIMITED = { RATE_LIMIT_PER_SECOND: '1', RATE_LIMIT_BURST: '5' }

let limited: RuntimeDeps
let unlimited: RuntimeDeps

beforeAll(async () => {
  ;[limited, unlimited] = await Promise.all([createTestDeps(LIMITED), createTestDeps()])
})
afterAll(async () => {
  await Promise.all([limited.close(), unlimited.close()])
})

/** A function that does no I/O, so that only the limiter decides the status. */
const createPingApp = () => {
  const app = new Hono<AppEnv>()
  app.get('/v1/ping', (c) => c.json({ ok: true }))
  return app
}

const decisions = async (deps: Pick<Deps, 'metrics'>, outcome: string) => {
  const metric = await deps.metrics.registry.getSingleMetric('rate_limit_decisions_total')?.get()
  return metric?.values.find((value) => value.labels.outcome === outcome)?.value ?? 0
}

/** A documentation-range IPv6 address no other test or run uses. */
const uniqueAddress = () => `2001:db8::${randomBytes(2).toString('hex')}:${randomBytes(2).toString('hex')}`

/** A request arriving on a socket from `peer`, which `app.request()` alone does not simulate. */
const fromPeer = (app: Hono<AppEnv>, peer: string, headers: Record<string, string> = {}) =>
  app.request('/v1/ping', { headers }, { incoming: { socket: { remoteAddress: peer } } })

describe('rate limiting per caller', () => {
  it('allows a burst of RATE_LIMIT_BURST, then answers 429 RATE_LIMITED with Retry-After', async () => {
    const app = createTestApp(limited, [createProductGetApp])
    const id = await insertProduct(limited)
    const token = await tokenFor(limited, uniqueUserId())
    const burst = await Promise.all(
      Array.from({ length: 5 }, () => call(app, 'GET', `/v1/products/${id}`, { token })),
    )
    expect(burst.map((res) => res.status)).toEqual([200, 200, 200, 200, 200])
    const refused = await call(app, 'GET', `/v1/products/${id}`, { token })
    const problem = expectProblemShape(refused, 429, 'RATE_LIMITED')
    expect(problem.type).toBe('/docs#error-RATE_LIMITED')
    expect(refused.headers.get('Retry-After')).toBe('1')
  })

  it('refills at RATE_LIMIT_PER_SECOND', async () => {
    const app = createTestApp(limited, [createPingApp])
    const userId = uniqueUserId()
    const token = await tokenFor(limited, userId)
    for (let i = 0; i < 5; i++) expect((await call(app, 'GET', '/v1/ping', { token })).status).toBe(200)
    const refused = await call(app, 'GET', '/v1/ping', { token })
    expect(refused.status).toBe(429)
    expect(refused.headers.get('Retry-After')).toBe('1')
    // Instead of sleeping for a second of wall time, the bucket's clock is set back by one: to the
    // script that is exactly a second gone by, so exactly one more token (at 1 a second) is due. This
    // process remembers its refusal until that second is over; another instance asks Redis.
    await limited.redis.hincrby(`ratelimit:user:${userId}`, 'at', -1_000)
    expect((await call(app, 'GET', '/v1/ping', { token })).status).toBe(429)
    const other = createTestApp(limited, [createPingApp])
    expect((await call(other, 'GET', '/v1/ping', { token })).status).toBe(200)
    expect((await call(other, 'GET', '/v1/ping', { token })).status).toBe(429)
  })

  it('refuses a refused caller again without asking Redis until its next token is due', async () => {
    const app = createTestApp(limited, [createPingApp])
    const userId = uniqueUserId()
    const token = await tokenFor(limited, userId)
    for (let i = 0; i < 5; i++) expect((await call(app, 'GET', '/v1/ping', { token })).status).toBe(200)
    expect((await call(app, 'GET', '/v1/ping', { token })).status).toBe(429)
    // Every decision of the script rewrites the bucket (its tokens and the time it was taken at).
    const bucket = () => limited.redis.hgetall(`ratelimit:user:${userId}`)
    const asked = await bucket()
    for (let i = 0; i < 20; i++) {
      const res = await call(app, 'GET', '/v1/ping', { token })
      expect(res.status).toBe(429)
      expect(res.headers.get('Retry-After')).toBe('1')
    }
    expect(await bucket()).toEqual(asked)
  })

  it('gives exactly RATE_LIMIT_BURST of 40 concurrent requests (one atomic script, no lost updates)', async () => {
    const app = createTestApp(limited, [createPingApp])
    const token = await tokenFor(limited, uniqueUserId())
    const before = await decisions(limited, 'limited')
    const statuses = (
      await Promise.all(Array.from({ length: 40 }, () => call(app, 'GET', '/v1/ping', { token })))
    ).map((res) => res.status)
    expect(statuses.filter((status) => status === 200)).toHaveLength(5)
    expect(statuses.filter((status) => status === 429)).toHaveLength(35)
    expect(await decisions(limited, 'limited')).toBeGreaterThanOrEqual(before + 35)
  })

  it('limits two users independently', async () => {
    const app = createTestApp(limited, [createPingApp])
    const alice = await tokenFor(limited, uniqueUserId())
    const bob = await tokenFor(limited, uniqueUserId(), 'admin')
    for (let i = 0; i < 5; i++)
      expect((await call(app, 'GET', '/v1/ping', { token: alice })).status).toBe(200)
    expect((await call(app, 'GET', '/v1/ping', { token: alice })).status).toBe(429)
    for (let i = 0; i < 5; i++) expect((await call(app, 'GET', '/v1/ping', { token: bob })).status).toBe(200)
    expect((await call(app, 'GET', '/v1/ping', { token: bob })).status).toBe(429)
  })

  it('keys a bucket by user id with a TTL, so an idle caller leaves nothing behind', async () => {
    const app = createTestApp(limited, [createPingApp])
    const userId = uniqueUserId()
    await call(app, 'GET', '/v1/ping', { token: await tokenFor(limited, userId) })
    const ttl = await limited.redis.pttl(`ratelimit:user:${userId}`)
    // One token spent refills in 1 s at 1/s, plus a second of slack.
    expect(ttl).toBeGreaterThan(0)
    expect(ttl).toBeLessThanOrEqual(2_000)
  })

  it('limits callers without a valid token by address; a bad token buys no fresh bucket', async () => {
    const app = createTestApp(limited, [createPingApp])
    const address = uniqueAddress()
    const statuses: number[] = []
    for (let i = 0; i < 6; i++) {
      // Each request sends a different invalid token: all of them still share the address's bucket.
      const res = await fromPeer(app, address, { Authorization: `Bearer x.y.${i}` })
      statuses.push(res.status)
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429])
    expect((await fromPeer(app, uniqueAddress())).status).toBe(200)
  })

  it('believes X-Real-IP and X-Forwarded-For only from a private peer (our nginx)', async () => {
    const app = createTestApp(limited, [createPingApp])
    const proxy = '10.1.2.3'
    const client = uniqueAddress()
    for (let i = 0; i < 5; i++) expect((await fromPeer(app, proxy, { 'X-Real-IP': client })).status).toBe(200)
    expect((await fromPeer(app, proxy, { 'X-Real-IP': client })).status).toBe(429)
    // Through the proxy, the other clients behind it keep their own buckets.
    expect((await fromPeer(app, proxy, { 'X-Real-IP': uniqueAddress() })).status).toBe(200)
    // X-Forwarded-For: the last hop is the one our proxy appended; the first is whatever the client sent.
    const spoofed = `${uniqueAddress()}, ${client}`
    expect((await fromPeer(app, proxy, { 'X-Forwarded-For': spoofed })).status).toBe(429)

    // A public peer cannot choose a fresh bucket per request by writing the header itself.
    const direct = uniqueAddress()
    const statuses: number[] = []
    for (let i = 0; i < 6; i++) {
      statuses.push((await fromPeer(app, direct, { 'X-Real-IP': uniqueAddress() })).status)
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429])
  })

  it('leaves health, metrics and docs unlimited', async () => {
    const app = createTestApp(limited, [createPingApp])
    const address = uniqueAddress()
    for (let i = 0; i < 6; i++) await fromPeer(app, address)
    for (const path of ['/health/live', '/metrics', '/openapi.json', '/docs']) {
      const res = await app.request(path, {}, { incoming: { socket: { remoteAddress: address } } })
      expect(res.status, path).toBe(200)
    }
  })

  it('is off when RATE_LIMIT_PER_SECOND is 0', async () => {
    expect(unlimited.config.rateLimitPerSecond).toBe(0)
    const app = createTestApp(unlimited, [createPingApp])
    const token = await tokenFor(unlimited, uniqueUserId())
    const statuses = await Promise.all(
      Array.from({ length: 30 }, async () => (await call(app, 'GET', '/v1/ping', { token })).status),
    )
    expect(statuses.every((status) => status === 200)).toBe(true)
  })
})

describe('rate limiting when Redis is unavailable', () => {
  it('fails open when Redis refuses connections, and counts outcome="error"', async () => {
    const down = createRedis('redis://127.0.0.1:1', redisKeyPrefix(limited.config.databaseUrl))
    try {
      const app = createTestApp({ ...limited, redis: down }, [createPingApp])
      const token = await tokenFor(limited, uniqueUserId())
      const before = await decisions(limited, 'error')
      const statuses = await Promise.all(
        Array.from({ length: 10 }, async () => (await call(app, 'GET', '/v1/ping', { token })).status),
      )
      expect(statuses.every((status) => status === 200)).toBe(true)
      expect(await decisions(limited, 'error')).toBe(before + 10)
    } finally {
      down.disconnect()
    }
  })

  it('fails open on its own deadline when Redis stalls, and after Redis dies', async () => {
    const server = await startOwnRedis()
    // No command timeout and no retry limit of the client's own: only the limiter's deadline can let a
    // request through a frozen Redis, so a 200 below proves that deadline works, without timing it.
    const redis = redisWithScripts(undefined, {
      host: '127.0.0.1',
      port: server.port,
      keyPrefix: redisKeyPrefix(limited.config.databaseUrl),
      enableOfflineQueue: false,
      maxRetriesPerRequest: null,
      lazyConnect: true,
    })
    redis.on('error', () => undefined)
    try {
      await connectRedis(redis)
      const app = createTestApp({ ...limited, redis }, [createPingApp])
      const token = await tokenFor(limited, uniqueUserId())
      for (let i = 0; i < 5; i++) expect((await call(app, 'GET', '/v1/ping', { token })).status).toBe(200)
      expect((await call(app, 'GET', '/v1/ping', { token })).status).toBe(429)

      // Another instance, which has not refused this caller itself, has to ask Redis.
      const other = createTestApp({ ...limited, redis }, [createPingApp])
      server.pause()
      const before = await decisions(limited, 'error')
      expect((await call(other, 'GET', '/v1/ping', { token })).status).toBe(200)

      await server.stop()
      expect((await call(other, 'GET', '/v1/ping', { token })).status).toBe(200)
      expect(await decisions(limited, 'error')).toBe(before + 2)
    } finally {
      redis.disconnect()
      await server.stop()
    }
  })
})
