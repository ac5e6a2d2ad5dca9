import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import createAdminProductUpdateApp from '../functions/admin-product-update/handler'
import createStatsConsumerWorker from '../functions/stats-consumer/handler'
import { createOutboxRelay } from '../shared/events/relay'
import { redisConnectionName } from '../shared/redis/client'
import { type RuntimeDeps, redisKeyPrefix } from '../shared/runtime/deps'
import { FUNCTIONS_DIR, functionNames } from '../shared/runtime/discover'
import { TEST_ENV } from '../shared/testing/env'
import { createEventRig, waitFor } from '../shared/testing/events'
import {
  call,
  createTestApp,
  createTestDeps,
  insertProduct,
  tokenFor,
  uniqueUserId,
} from '../shared/testing/harness'
import { freePort } from '../shared/testing/own-redis'
import { bundleAll } from './build'

/**
 * How many Redis connections each kind of process holds (docs/scaling.md): every HTTP function bundle
 * started for real and counted in Redis's CLIENT LIST by the names the clients give themselves, and the
 * workers' connections counted in-process. A process holds a fixed set, however much it serves.
 */

const ROOT = new URL('..', import.meta.url).pathname
const HOST = hostname()
const DB_PREFIX = redisKeyPrefix(TEST_ENV.DATABASE_URL as string)

let observer: Redis
let deps: RuntimeDeps
let bundles = ''
const started: ChildProcess[] = []

/** What each connection of process `pid` is, by its name `<prefix><what>:<host>:<pid>`, sorted. */
async function connectionsOf(pid: number, prefix = DB_PREFIX): Promise<string[]> {
  const list = (await observer.call('CLIENT', 'LIST')) as string
  const suffix = `:${HOST}:${pid}`
  return list
    .split('\n')
    .map((line) => /(?:^| )name=(\S*)/.exec(line)?.[1] ?? '')
    .filter((name) => name.startsWith(prefix) && name.endsWith(suffix))
    .map((name) => name.slice(prefix.length, -suffix.length))
    .sort()
}

/** The HTTP function `name` from its bundle, as a container runs it; resolves with its port once ready. */
async function startBundle(name: string): Promise<{ child: ChildProcess; base: string }> {
  const port = await freePort()
  let output = ''
  const child = spawn(process.execPath, [join(bundles, name, 'index.mjs')], {
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      DATABASE_URL: TEST_ENV.DATABASE_URL,
      REDIS_URL: TEST_ENV.REDIS_URL,
      RABBITMQ_URL: TEST_ENV.RABBITMQ_URL,
      NODE_ENV: 'test',
      LOG_LEVEL: 'silent',
      RATE_LIMIT_PER_SECOND: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  started.push(child)
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  const base = `http://127.0.0.1:${port}`
  await waitFor(`${name} to be ready`, async () => {
    if (child.exitCode !== null) throw new Error(`${name} exited during start-up:\n${output}`)
    return fetch(`${base}/health/ready`).then(
      (res) => res.ok,
      () => false,
    )
  })
  return { child, base }
}

async function stop(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const [code] = await exited
  return code
}

/** docs/scaling.md's "Redis per pod", by unit. */
async function documented(): Promise<Map<string, number>> {
  const doc = await readFile(join(ROOT, 'docs', 'scaling.md'), 'utf8')
  const rows = doc
    .split('\n')
    .map((line) =>
      line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim()),
    )
    .filter((row) => row.length === 8 && /^`[\w-]+`$/.test(row[0] as string))
  return new Map(rows.map((row) => [(row[0] as string).slice(1, -1), Number(row[6])]))
}

beforeAll(async () => {
  observer = new Redis(TEST_ENV.REDIS_URL as string, { connectionName: redisConnectionName('test-observer') })
  deps = await createTestDeps()
  bundles = await mkdtemp(join(tmpdir(), 'commerce-redis-connections-'))
  // What `npm run build` writes to dist/functions, into a folder of this test's own (the cluster test
  // rebuilds dist/ meanwhile).
  await bundleAll(
    functionNames().map((name) => ({
      name,
      entry: join(FUNCTIONS_DIR.pathname, name, 'index.ts'),
      out: `${name}/index`,
    })),
    bundles,
  )
}, 120_000)

afterAll(async () => {
  await Promise.all(started.map(stop))
  await deps?.close()
  observer?.disconnect()
  if (bundles) await rm(bundles, { recursive: true, force: true })
})

describe('Redis connections per process', () => {
  it('product-get holds its main client and the cache-invalidation subscriber, idle and after serving', async () => {
    const products = await Promise.all([1, 2, 3].map(() => insertProduct(deps, { price: 1_000 })))
    const { child, base } = await startBundle('product-get')
    const pid = child.pid as number
    expect(await connectionsOf(pid)).toEqual(['cache-invalidation', 'main'])

    const reads = await Promise.all(
      Array.from({ length: 300 }, (_, i) => fetch(`${base}/v1/products/${products[i % 3]}`)),
    )
    expect(reads.map((r) => r.status).filter((s) => s !== 200)).toEqual([])
    // An admin update elsewhere reaches this process over its subscriber: the next reads show it.
    const admin = createTestApp(deps, [createAdminProductUpdateApp])
    const update = await call(admin, 'PATCH', `/v1/admin/products/${products[0]}`, {
      token: await tokenFor(deps, uniqueUserId(), 'admin'),
      body: { price: 2_345 },
    })
    expect(update.status).toBe(200)
    await waitFor('product-get to serve the new price', async () => {
      const res = await fetch(`${base}/v1/products/${products[0]}`)
      return ((await res.json()) as { price: number }).price === 2_345
    })
    expect(await connectionsOf(pid)).toEqual(['cache-invalidation', 'main'])

    expect(await stop(child)).toBe(0)
    await waitFor('its connections to be gone', async () => (await connectionsOf(pid)).length === 0)
  })

  it('every HTTP function bundle holds what docs/scaling.md says, and nothing named otherwise', async () => {
    const expected = await documented()
    const names = functionNames()
    const running = await Promise.all(names.map(async (name) => ({ name, ...(await startBundle(name)) })))
    const held = await Promise.all(
      running.map(async ({ name, child }) => ({
        name,
        connections: await connectionsOf(child.pid as number),
      })),
    )
    expect(Object.fromEntries(held.map(({ name, connections }) => [name, connections.length]))).toEqual(
      Object.fromEntries(names.map((name) => [name, expected.get(name)])),
    )
    for (const { name, connections } of held) {
      expect(
        connections.filter((what) => what !== 'main' && what !== 'cache-invalidation'),
        name,
      ).toEqual([])
    }
    const codes = await Promise.all(running.map(({ child }) => stop(child)))
    expect(codes.every((code) => code === 0)).toBe(true)
  })

  it('the outbox relay holds five and the statistics consumer one, as docs/scaling.md says', async () => {
    const expected = await documented()
    const rig = await createEventRig('redisconns')
    const prefix = redisKeyPrefix(rig.database.url)
    const relay = createOutboxRelay(rig.deps, { topology: rig.topology })
    const consumer = createStatsConsumerWorker(rig.deps, { topology: rig.topology })
    try {
      // This process's connections with the rig's database prefix: its main client, then the relay's.
      expect(await connectionsOf(process.pid, prefix)).toEqual(['main'])
      await relay.start()
      const relayNames = [
        'main',
        'relay-queue',
        'relay-wake',
        'relay-worker',
        expect.stringMatching(/^bull:.+:w:relay-blocking$/),
      ]
      await waitFor(
        'the relay to connect',
        async () => (await connectionsOf(process.pid, prefix)).length >= 5,
      )
      const withRelay = await connectionsOf(process.pid, prefix)
      expect(withRelay).toEqual(expect.arrayContaining(relayNames))
      expect(withRelay).toHaveLength(expected.get('outbox-relay') as number)
      // The consumer adds none: it reads RabbitMQ and writes MySQL, and its process has the main client.
      await consumer.start()
      expect(await connectionsOf(process.pid, prefix)).toEqual(withRelay)
      expect(expected.get('stats-consumer')).toBe(1)
    } finally {
      await consumer.stop()
      await relay.stop()
      await rig.close()
    }
  })
})
