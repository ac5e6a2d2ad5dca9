import { spawnSync } from 'node:child_process'
import { randomInt, randomUUID } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { Agent, request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import type mysql from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDatabase, type Database } from '../../shared/db/client'
import { mintToken } from '../../shared/http/auth'
import { checkInvariants } from '../../shared/invariants/check'
import { TEST_ENV } from '../../shared/testing/env'
import { loadModel, topologyBudget } from '../gen-infra'
import {
  type ClusterState,
  deleteVhost,
  readState,
  rollingRestart,
  startCluster,
  stopCluster,
} from './cluster'
import { rootConnection, serverOf } from './mariadb'
import { ensureProgram, freePort, isAlive, listening, waitUntil } from './processes'

/**
 * The proof of issues 12 and 14, short form: the local cluster started for real (its own MariaDB
 * primary and replica, Redis, nginx, one process per function instance, two of order-create,
 * product-get and coupon-issue), exercised through nginx over HTTPS, with instances terminated and
 * killed under load, then stopped. MariaDB's max_connections is the budget the generator computes.
 */

const missing = (
  [
    ['mariadbd', 'mariadb-server'],
    ['redis-server', 'redis-server'],
    ['nginx', 'nginx'],
    ['openssl', 'openssl'],
  ] as const
).filter(([program, pkg]) => !ensureProgram(program, pkg, () => undefined))
const SKIP = missing.length > 0
const SKIPPED = SKIP
  ? ` (skipped: ${missing.map(([p]) => p).join(', ')} not installed and not installable; apt-get install -y ${missing.map(([, pkg]) => pkg).join(' ')})`
  : ''

const ROOT = new URL('../..', import.meta.url).pathname
let stateDir = ''
let vhost = ''
let state: ClusterState
let ca: Buffer
let agent: Agent
let jwtSecret = ''
let database: Database
let admin = ''

type Response = { status: number; body: unknown; at: number }
let completions = 0
/** Requests sent again because a kept-alive connection to nginx was closed under them (see `call`). */
let resent = 0

/**
 * One request through nginx over HTTPS; a network error is status 0. As HTTP clients do, a request that
 * fails on a reused keep-alive connection before any response (nginx closed it: a reload ends the old
 * workers' idle connections) is sent once more on a new one, but only where that is safe: a GET, or a
 * request with an Idempotency-Key (a second copy replays the first).
 */
function call(
  method: string,
  path: string,
  options: { token?: string; body?: unknown; key?: string } = {},
  retry = true,
): Promise<Response> {
  return new Promise<Response>((resolve) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
    const headers: Record<string, string> = {}
    if (payload !== undefined) headers['Content-Type'] = 'application/json'
    if (options.token) headers.Authorization = `Bearer ${options.token}`
    if (options.key) headers['Idempotency-Key'] = options.key
    const req = httpsRequest(
      { host: '127.0.0.1', port: state.httpsPort, method, path, headers, agent, servername: 'localhost' },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          text += chunk
        })
        res.on('end', () => {
          let body: unknown = text
          try {
            body = JSON.parse(text)
          } catch {
            // not JSON (the /docs page)
          }
          resolve({ status: res.statusCode ?? 0, body, at: completions++ })
        })
      },
    )
    req.on('error', () => {
      if (retry && req.reusedSocket && (method === 'GET' || options.key)) {
        resent++
        resolve(call(method, path, options, false))
      } else {
        resolve({ status: 0, body: undefined, at: completions++ })
      }
    })
    req.end(payload)
  })
}

/**
 * `total` requests, `concurrency` at a time; `when(done)` runs as each completes, so a test can act at
 * a given point of the load (a count, not a time). Results are in request order.
 */
async function load(
  total: number,
  concurrency: number,
  send: (i: number) => Promise<Response>,
  when: (done: number) => void = () => undefined,
): Promise<Response[]> {
  const results: Response[] = new Array(total)
  let next = 0
  let done = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++
        results[i] = await send(i)
        when(++done)
      }
    }),
  )
  return results
}

const tally = (results: Response[]) =>
  results.reduce<Record<string, number>>((counts, r) => {
    counts[r.status] = (counts[r.status] ?? 0) + 1
    return counts
  }, {})

const token = (sub: number, role: 'user' | 'admin' = 'user') =>
  mintToken(jwtSecret, { sub, role, ttlSeconds: 3600 })

async function newProduct(stock: number, price = 1_000): Promise<number> {
  const res = await call('POST', '/v1/admin/products', {
    token: admin,
    body: { name: `cluster-${randomUUID().slice(0, 8)}`, price, stock },
  })
  expect(res.status).toBe(201)
  return (res.body as { id: number }).id
}

async function newUser(balance: number): Promise<{ id: number; token: string }> {
  const id = randomInt(1_000_000, 2 ** 40)
  const userToken = await token(id)
  const res = await call('POST', `/v1/users/${id}/balance/charge`, {
    token: userToken,
    body: { amount: balance },
  })
  expect(res.status).toBe(200)
  return { id, token: userToken }
}

const instance = (name: string) => {
  const p = readState(stateDir)?.processes.find((process) => process.name === name)
  if (!p) throw new Error(`no process ${name} in the cluster`)
  return p
}

async function serverQuery<T>(
  role: 'primary' | 'replica',
  run: (c: mysql.Connection) => Promise<T>,
): Promise<T> {
  const port = instance(`mariadb-${role}`).port
  const connection = await rootConnection(serverOf(stateDir, role, port))
  try {
    return await run(connection)
  } finally {
    await connection.end()
  }
}

const statusVariable = (role: 'primary' | 'replica', name: string) =>
  serverQuery(role, async (c) => {
    const [rows] = (await c.query('SHOW GLOBAL STATUS LIKE ?', [name])) as unknown as [
      Array<{ Value: string }>,
    ]
    return Number(rows[0]?.Value)
  })

describe.skipIf(SKIP)(`the local cluster (npm run cluster)${SKIPPED}`, () => {
  beforeAll(async () => {
    const build = spawnSync('npm', ['run', '-s', 'build'], { cwd: ROOT, encoding: 'utf8' })
    if (build.status !== 0) throw new Error(`npm run build failed:\n${build.stderr}${build.stdout}`)
    stateDir = mkdtempSync(join(tmpdir(), 'commerce-cluster-'))
    vhost = `commerce-cluster-test-${process.pid}-${randomInt(1e6)}`
    state = await startCluster({
      stateDir,
      httpPort: await freePort(),
      httpsPort: await freePort(),
      rabbitmqUrl: TEST_ENV.RABBITMQ_URL as string,
      vhost,
      appEnv: { RATE_LIMIT_PER_SECOND: '0', LOG_LEVEL: 'warn' },
    })
    ca = readFileSync(join(stateDir, 'tls', 'cert.pem'))
    agent = new Agent({ keepAlive: true, ca, maxSockets: 64 })
    jwtSecret = readFileSync(join(stateDir, 'jwt-secret'), 'utf8').trim()
    admin = await token(1, 'admin')
    const secrets = JSON.parse(readFileSync(join(stateDir, 'secrets.json'), 'utf8')) as {
      appPassword: string
    }
    database = createDatabase({
      url: `mysql://commerce:${secrets.appPassword}@127.0.0.1:${instance('mariadb-primary').port}/commerce`,
    })
  }, 240_000)

  afterAll(async () => {
    console.log(`requests sent again after nginx closed a kept-alive connection: ${resent}`)
    agent?.destroy()
    await database?.close()
    if (stateDir) {
      await stopCluster(stateDir)
      rmSync(stateDir, { recursive: true, force: true })
    }
    if (vhost) deleteVhost(vhost)
  }, 60_000)

  it('serves the API over HTTPS (TLS 1.2+ only) and HTTP, with /docs, and keeps /metrics and /health private', async () => {
    expect((await call('GET', '/v1/products')).status).toBe(200)
    const plain = await fetch(`http://127.0.0.1:${state.httpPort}/v1/products`)
    expect(plain.status).toBe(200)
    const docs = await call('GET', '/docs')
    expect(docs.status).toBe(200)
    expect(String(docs.body)).toContain('id="error-SERVICE_UNAVAILABLE"')
    const openapi = await call('GET', '/openapi.json')
    const model = await loadModel()
    expect(Object.keys((openapi.body as { paths: object }).paths)).toHaveLength(
      new Set(model.functions.map((fn) => fn.route.path)).size,
    )
    for (const path of ['/metrics', '/health/ready', '/health/live/../ready']) {
      expect({ path, status: (await call('GET', path)).status }).toEqual({ path, status: 404 })
    }
    const handshake = (minVersion: 'TLSv1' | 'TLSv1.2', maxVersion: 'TLSv1.1' | 'TLSv1.2') =>
      new Promise<string>((resolve) => {
        const socket = tlsConnect({
          host: '127.0.0.1',
          port: state.httpsPort,
          ca,
          servername: 'localhost',
          minVersion,
          maxVersion,
          ciphers: 'DEFAULT@SECLEVEL=0',
        })
        socket.once('secureConnect', () => {
          resolve(socket.getProtocol() ?? '')
          socket.end()
        })
        socket.once('error', () => resolve('refused'))
      })
    expect(await handshake('TLSv1.2', 'TLSv1.2')).toBe('TLSv1.2')
    expect(await handshake('TLSv1', 'TLSv1.1')).toBe('refused')
  })

  it("gives both MariaDB servers the generator's connection budget as max_connections", async () => {
    const budget = topologyBudget(await loadModel())
    for (const role of ['primary', 'replica'] as const) {
      const max = await serverQuery(role, async (c) => {
        const [rows] = (await c.query('SELECT @@max_connections AS max')) as unknown as [[{ max: number }]]
        return Number(rows[0].max)
      })
      expect({ role, max }).toEqual({ role, max: budget.maxConnections })
    }
    expect(state.instances).toMatchObject({ 'order-create': 2, 'product-get': 2, 'coupon-issue': 2 })
  })

  it('answers catalogue lists from the replica, and shows an admin update on the next read', async () => {
    const productId = await newProduct(10, 1_000)
    // The list query of `?limit=37` (it asks for one row more, to know whether a next page exists).
    const listQuery = "argument LIKE 'select %from `products`%limit 38'"
    const countLists = (role: 'primary' | 'replica') =>
      serverQuery(role, async (c) => {
        const [rows] = (await c.query(
          `SELECT COUNT(*) AS n FROM mysql.general_log WHERE ${listQuery}`,
        )) as unknown as [[{ n: number }]]
        return Number(rows[0].n)
      })
    const generalLog = (on: boolean) =>
      Promise.all(
        (['primary', 'replica'] as const).map((role) =>
          serverQuery(role, async (c) => {
            await c.query("SET GLOBAL log_output = 'TABLE'")
            await c.query(`SET GLOBAL general_log = ${on ? 'ON' : 'OFF'}`)
            if (on) await c.query('TRUNCATE TABLE mysql.general_log')
          }),
        ),
      )
    await generalLog(true)
    try {
      await waitUntil('the replica to have the new product', async () => {
        const list = await call('GET', `/v1/products?limit=100`)
        return (list.body as { items: Array<{ id: number }> }).items.some((item) => item.id === productId)
      })
      const before = await countLists('replica')
      for (let i = 0; i < 10; i++) expect((await call('GET', '/v1/products?limit=37')).status).toBe(200)
      expect((await countLists('replica')) - before).toBeGreaterThanOrEqual(10)
      expect(await countLists('primary')).toBe(0)
    } finally {
      await generalLog(false)
    }

    // Read it through both product-get instances first (caches warm), then change it.
    for (let i = 0; i < 4; i++) expect((await call('GET', `/v1/products/${productId}`)).status).toBe(200)
    const update = await call('PATCH', `/v1/admin/products/${productId}`, {
      token: admin,
      body: { price: 2_500, stockAdjustment: 5 },
    })
    expect(update.status).toBe(200)
    for (let i = 0; i < 4; i++) {
      expect((await call('GET', `/v1/products/${productId}`)).body).toMatchObject({ price: 2_500, stock: 15 })
    }
  })

  it('places orders and reads the popular list through nginx', async () => {
    const productId = await newProduct(100)
    const user = await newUser(100_000)
    const order = await call('POST', '/v1/orders', {
      token: user.token,
      key: randomUUID(),
      body: { items: [{ productId, quantity: 3 }] },
    })
    expect(order.status).toBe(201)
    expect(order.body).toMatchObject({ status: 'PAID', total: 3_000 })
    expect((await call('GET', `/v1/products/${productId}`)).body).toMatchObject({ stock: 97 })
    const popular = await call('GET', '/v1/products/popular')
    expect(popular.status).toBe(200)
    expect(popular.body).toMatchObject({ items: expect.any(Array) })
  })

  /** Orders from `users` for `products`, one each, every one with its own idempotency key. */
  const orderLoad = async (total: number, when: (done: number) => void) => {
    const products = await Promise.all([newProduct(10_000), newProduct(10_000)])
    const users = await Promise.all(Array.from({ length: 8 }, () => newUser(10_000_000)))
    const results = await load(
      total,
      8,
      (i) =>
        call('POST', '/v1/orders', {
          token: users[i % users.length]?.token,
          key: randomUUID(),
          body: { items: [{ productId: products[i % products.length], quantity: 1 }] },
        }),
      when,
    )
    const violations = await checkInvariants(database.db, {
      productIds: products,
      userIds: users.map((u) => u.id),
    })
    return { results, violations }
  }

  it('loses no request when one order-create instance gets SIGTERM under load', async () => {
    const victim = instance('order-create#1')
    const { results, violations } = await orderLoad(200, (done) => {
      if (done === 60) process.kill(victim.pid, 'SIGTERM')
    })
    expect(tally(results)).toEqual({ 201: 200 })
    expect(violations).toEqual([])
    await waitUntil('the terminated instance to exit', () => !isAlive(victim.pid))
  })

  it('loses no request in a rolling restart of order-create under load', async () => {
    // Also brings back the instance terminated above.
    let restart: Promise<void> | undefined
    const { results, violations } = await orderLoad(200, (done) => {
      if (done === 20) restart = rollingRestart(stateDir, ['order-create'])
    })
    await restart
    expect(tally(results)).toEqual({ 201: 200 })
    expect(violations).toEqual([])
    const instances = readState(stateDir)?.processes.filter((p) => p.entry === 'order-create') ?? []
    expect(instances.map((p) => isAlive(p.pid))).toEqual([true, true])
  })

  it('routes reads around a product-get instance killed with SIGKILL', async () => {
    const productId = await newProduct(5)
    const victim = instance('product-get#1')
    const concurrency = 8
    const results = await load(
      400,
      concurrency,
      () => call('GET', `/v1/products/${productId}`),
      (done) => {
        if (done === 100) process.kill(victim.pid, 'SIGKILL')
      },
    )
    // Only requests in flight on the killed instance may fail; nginx sends the rest to the other one.
    const failed = results.filter((r) => r.status !== 200)
    expect(failed.length).toBeLessThanOrEqual(concurrency)
    const last = [...results].sort((a, b) => a.at - b.at).slice(-200)
    expect(tally(last)).toEqual({ 200: 200 })
    await rollingRestart(stateDir, ['product-get'])
  })

  it('leaves no order half-done when an order-create instance is killed mid-load', async () => {
    const victim = instance('order-create#2')
    const { results, violations } = await orderLoad(200, (done) => {
      if (done === 60) process.kill(victim.pid, 'SIGKILL')
    })
    const failed = results.filter((r) => r.status !== 201)
    console.log(`order load with SIGKILL: ${JSON.stringify(tally(results))}`)
    expect(failed.length).toBeLessThanOrEqual(8)
    expect(violations).toEqual([])
    await rollingRestart(stateDir, ['order-create'])
  })

  it('issues coupons, places orders and adjusts stock concurrently within the connection budget: no 503', async () => {
    const couponRes = await call('POST', '/v1/admin/coupons', {
      token: admin,
      body: { name: 'cluster sale', type: 'FIXED', value: 500, totalQuantity: 40, validDays: 7 },
    })
    expect(couponRes.status).toBe(201)
    const couponId = (couponRes.body as { id: number }).id
    const products = await Promise.all([newProduct(5_000), newProduct(5_000), newProduct(5_000)])
    const users = await Promise.all(Array.from({ length: 60 }, () => newUser(10_000_000)))

    const issues = load(60, 16, (i) =>
      call('POST', `/v1/coupons/${couponId}/issue`, { token: users[i]?.token, key: randomUUID() }),
    )
    const orders = load(160, 16, (i) =>
      call('POST', '/v1/orders', {
        token: users[i % users.length]?.token,
        key: randomUUID(),
        body: {
          items: [
            { productId: products[i % 3], quantity: 1 + (i % 2) },
            { productId: products[(i + 1) % 3], quantity: 1 },
          ],
        },
      }),
    )
    const adjustments = load(40, 8, (i) =>
      call('PATCH', `/v1/admin/products/${products[i % 3]}`, {
        token: admin,
        body: { stockAdjustment: i % 2 === 0 ? 7 : -3 },
      }),
    )
    const [issued, ordered, adjusted] = await Promise.all([issues, orders, adjustments])
    expect(tally(issued)).toEqual({ 201: 40, 409: 20 })
    expect(tally(ordered)).toEqual({ 201: 160 })
    expect(tally(adjusted)).toEqual({ 200: 40 })
    const violations = await checkInvariants(database.db, {
      productIds: products,
      userIds: users.map((u) => u.id),
      couponIds: [couponId],
    })
    expect(violations).toEqual([])
    // Over the whole run, with every kill and restart above: MariaDB never refused a connection.
    for (const role of ['primary', 'replica'] as const) {
      const refused = await statusVariable(role, 'Connection_errors_max_connections')
      const peak = await statusVariable(role, 'Max_used_connections')
      console.log(`${role}: peak ${peak} connections of max_connections ${state.budget.maxConnections}`)
      expect({ role, refused }).toEqual({ role, refused: 0 })
      expect(peak).toBeLessThanOrEqual(state.budget.maxConnections)
    }
  })

  it('stops every process it started and leaves no port listening', async () => {
    const recorded = readState(stateDir)?.processes ?? []
    expect(recorded.length).toBe(Object.values(state.instances).reduce((a, b) => a + b, 0) + 4)
    const result = await stopCluster(stateDir)
    expect(result.stillListening).toEqual([])
    expect(recorded.filter((p) => isAlive(p.pid)).map((p) => p.name)).toEqual([])
    for (const port of [state.httpPort, state.httpsPort, ...recorded.map((p) => p.port)]) {
      expect({ port, listening: await listening(port) }).toEqual({ port, listening: false })
    }
  })
})
