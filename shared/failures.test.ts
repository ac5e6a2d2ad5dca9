import amqp from 'amqplib'
import { eq, sql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/mysql2'
import mysql from 'mysql2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import createOrderCreateApp from '../functions/order-create/handler'
import { orders, outbox, products } from './db/schema'
import { AppError } from './errors'
import { isConnectionExhausted, isDependencyFailure } from './failures'
import { createRedis } from './redis/client'
import type { RuntimeDeps } from './runtime/deps'
import { createTcpProxy, type TcpProxy } from './testing/events'
import {
  call,
  createTestApp,
  createTestDeps,
  fundUser,
  insertProduct,
  testConfig,
  tokenFor,
  uniqueUserId,
} from './testing/harness'

/** `url` with its host and port replaced by the proxy's. */
const via = (url: string, proxy: TcpProxy) => {
  const u = new URL(url)
  u.hostname = '127.0.0.1'
  u.port = String(proxy.port)
  return u.toString()
}

const config = testConfig()
const portOf = (url: string, fallback: number) => Number(new URL(url).port || fallback)

const caught = async (promise: Promise<unknown>): Promise<unknown> => {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected a failure')
}

describe('isDependencyFailure, on errors the drivers raise for real cuts', () => {
  let mysqlProxy: TcpProxy
  let redisProxy: TcpProxy
  let rabbitProxy: TcpProxy
  beforeAll(async () => {
    mysqlProxy = await createTcpProxy(portOf(config.databaseUrl, 3306))
    redisProxy = await createTcpProxy(portOf(config.redisUrl, 6379))
    rabbitProxy = await createTcpProxy(portOf(config.rabbitmqUrl, 5672))
  })
  afterAll(async () => {
    await Promise.all([mysqlProxy.close(), redisProxy.close(), rabbitProxy.close()])
  })

  const pool = (connectTimeout = 2_000) =>
    mysql.createPool({ uri: via(config.databaseUrl, mysqlProxy), connectionLimit: 2, connectTimeout })

  it('mysql2: a connection lost during a query, and one refused', async () => {
    await mysqlProxy.restore()
    const p = pool()
    try {
      const running = p.promise().query('SELECT SLEEP(5)')
      await new Promise((resolve) => setTimeout(resolve, 100))
      await mysqlProxy.cut()
      const lost = await caught(running)
      expect(lost).toMatchObject({ code: 'PROTOCOL_CONNECTION_LOST' })
      expect(isDependencyFailure(lost)).toBe(true)
      const refused = await caught(p.promise().query('SELECT 1'))
      expect(isDependencyFailure(refused)).toBe(true)
    } finally {
      await mysqlProxy.restore()
      await p.promise().end()
    }
  })

  it('mysql2: a connect that hangs (blackhole) times out', async () => {
    await mysqlProxy.blackhole()
    const p = pool(300)
    try {
      const error = await caught(p.promise().query('SELECT 1'))
      expect(error).toMatchObject({ code: 'ETIMEDOUT' })
      expect(isDependencyFailure(error)).toBe(true)
    } finally {
      await mysqlProxy.restore()
      await p.promise().end()
    }
  })

  it('drizzle: the ROLLBACK after a cut fails on the closed connection, wrapped in "Failed query"', async () => {
    await mysqlProxy.restore()
    const p = pool()
    const db = drizzle({ client: p })
    try {
      const error = await caught(
        db.transaction(async (tx) => {
          await tx.execute(sql`SELECT 1`)
          const cut = mysqlProxy.cutWhen((chunk) => chunk.includes('SELECT 2'))
          await Promise.all([tx.execute(sql`SELECT 2`), cut])
        }),
      )
      expect(String((error as Error).message)).toMatch(/^Failed query: rollback/)
      expect(String(((error as Error).cause as Error).message)).toMatch(/closed state/)
      expect(isDependencyFailure(error)).toBe(true)
    } finally {
      await p.promise().end()
    }
  })

  it('ioredis: a cut connection, and a command to a peer that does not answer', async () => {
    await redisProxy.restore()
    const redis = createRedis(via(config.redisUrl, redisProxy))
    try {
      await redis.connect()
      await redisProxy.blackhole()
      const timedOut = await caught(redis.get('any'))
      expect(String((timedOut as Error).message)).toMatch(/Command timed out/)
      expect(isDependencyFailure(timedOut)).toBe(true)
      await redisProxy.cut()
      const closed = await caught(redis.get('any'))
      expect(isDependencyFailure(closed)).toBe(true)
    } finally {
      await redisProxy.restore()
      redis.disconnect()
    }
  })

  it('amqplib: a channel whose connection was cut', async () => {
    await rabbitProxy.restore()
    const connection = await amqp.connect(via(config.rabbitmqUrl, rabbitProxy))
    connection.on('error', () => undefined)
    const closed = new Promise((resolve) => connection.once('close', resolve))
    const channel = await connection.createConfirmChannel()
    channel.on('error', () => undefined)
    await rabbitProxy.cut()
    await closed
    const error = await caught(channel.checkExchange('amq.topic'))
    expect(isDependencyFailure(error)).toBe(true)
    await rabbitProxy.restore()
  })

  it('is false for what is not a dependency failure', async () => {
    const p = mysql.createPool({ uri: config.databaseUrl, connectionLimit: 1 })
    try {
      expect(isDependencyFailure(await caught(p.promise().query('SELEC 1')))).toBe(false)
      expect(isDependencyFailure(new AppError('INSUFFICIENT_STOCK', 'none left'))).toBe(false)
      expect(isDependencyFailure(new TypeError('undefined is not a function'))).toBe(false)
    } finally {
      await p.promise().end()
    }
  })

  it('isConnectionExhausted: MySQL refusing more connections (1040)', async () => {
    const admin = mysql.createPool({ uri: config.databaseUrl, connectionLimit: 1 })
    const user = `exhausted_${Date.now()}`
    try {
      await admin.promise().query(`CREATE USER '${user}'@'%' IDENTIFIED BY 'x' WITH MAX_USER_CONNECTIONS 1`)
      const target = new URL(config.databaseUrl)
      target.username = user
      target.password = 'x'
      target.pathname = '/'
      const p = mysql.createPool({ uri: target.toString(), connectionLimit: 2 })
      try {
        const first = await p.promise().getConnection()
        const error = await caught(p.promise().query('SELECT 1'))
        first.release()
        expect(isConnectionExhausted(error)).toBe(true)
        expect(isDependencyFailure(error)).toBe(true)
      } finally {
        await p.promise().end()
      }
    } finally {
      await admin.promise().query(`DROP USER IF EXISTS '${user}'@'%'`)
      await admin.promise().end()
    }
  })
})

describe('an order whose MySQL connection is cut', () => {
  let proxy: TcpProxy
  let deps: RuntimeDeps
  let app: ReturnType<typeof createTestApp>
  beforeAll(async () => {
    proxy = await createTcpProxy(portOf(config.databaseUrl, 3306))
    deps = await createTestDeps({ DATABASE_URL: via(config.databaseUrl, proxy) })
    app = createTestApp(deps, [createOrderCreateApp])
  })
  afterAll(async () => {
    await deps.close()
    await proxy.close()
  })

  const setUp = async () => {
    const productId = await insertProduct(deps, { stock: 10, price: 1_000 })
    const userId = uniqueUserId()
    await fundUser(deps, userId, 5_000)
    return { productId, userId, token: await tokenFor(deps, userId) }
  }
  const placedFor = async (userId: number) =>
    deps.db.select({ id: orders.id }).from(orders).where(eq(orders.userId, userId))
  const stockOf = async (id: number) =>
    (await deps.db.select({ stock: products.stock }).from(products).where(eq(products.id, id)))[0]?.stock

  it('before COMMIT: it is placed once, on a fresh connection, never a 500', async () => {
    const { productId, userId, token } = await setUp()
    const cut = proxy.cutWhen((chunk) => /UPDATE products SET stock/i.test(chunk.toString('latin1')))
    const res = await call(app, 'POST', '/v1/orders', {
      token,
      body: { items: [{ productId, quantity: 2 }] },
    })
    await cut
    expect(res.status).toBe(201)
    const placed = await placedFor(userId)
    expect(placed).toHaveLength(1)
    expect(await stockOf(productId)).toBe(8)
    const events = await deps.db
      .select({ id: outbox.id })
      .from(outbox)
      .where(eq(outbox.aggregateId, placed[0]?.id ?? 0))
    expect(events).toHaveLength(1)
  })

  it('during COMMIT: 503 with Retry-After (outcome unknown), and the keyed retry places it once', async () => {
    const { productId, userId, token } = await setUp()
    const request = {
      token,
      body: { items: [{ productId, quantity: 1 }] },
      headers: { 'Idempotency-Key': 'commit-cut' },
    }
    const cut = proxy.cutWhen((chunk) => /\bCOMMIT\b/i.test(chunk.toString('latin1')))
    const first = await call(app, 'POST', '/v1/orders', request)
    await cut
    expect(first.status).toBe(503)
    expect(first.headers.get('Retry-After')).toBe('1')
    // The COMMIT never reached the server: nothing was placed, so the retry places the order.
    expect(await placedFor(userId)).toHaveLength(0)
    const retry = await call(app, 'POST', '/v1/orders', request)
    expect(retry.status).toBe(201)
    expect(retry.headers.get('Idempotent-Replayed')).toBeNull()
    expect(await placedFor(userId)).toHaveLength(1)
    expect(await stockOf(productId)).toBe(9)
  })
})
