import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import mysql from 'mysql2/promise'
import { loadConfig } from '../shared/config'
import { createDatabase, type Db } from '../shared/db/client'
import { checkInvariants } from '../shared/invariants/check'
import { applyMigrations, redisKeyPrefix } from '../shared/runtime/deps'
import { type CpuGroup, type CpuUse, createCpuMeter } from './bench/cpu'
import { type Buyer, makeBuyers, makeProducts } from './bench/fixtures'
import { type BenchRequest, type Outcome, runEach, runTimed, type Sample, summarize } from './bench/load'
import { ensureNginx, nginxVersion, startNginx } from './bench/nginx'
import { type Child, freePort, installCleanup, startTsx, stopAll, waitForOk } from './bench/processes'
import { createRawOrders, SERVICE_POOL_SIZE } from './bench/raw-orders'
import {
  type FlashSales,
  type Machine,
  type Measured,
  type Results,
  resultTables,
  statusLines,
  writeBenchmarksDoc,
} from './bench/report'

/**
 * `npm run bench`: the only place speed is measured. Every scenario is paired with a ceiling measured in
 * the same run, through the same nginx, against a database of the bench's own, and the two sides run
 * in alternating rounds, so that whatever else the shared machine does at the time weighs on both
 * alike. The ratios are the result; absolute numbers are there for context. docs/benchmarks.md has the
 * last recorded run.
 */

const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/commerce_bench'
const CONNECTIONS = 50
/** Each side gets ROUNDS × ROUND_SECONDS of measurement, in rounds alternating with the other side. */
const ROUNDS = 3
const ROUND_SECONDS = 2
const WARMUP_SECONDS = 2
/**
 * Pause between rounds, not measured: a load generator stops on time, but the requests still queued in
 * the server finish after it, and that work must not land in the other side's round.
 */
const SETTLE_MS = 1_000
const READ_PRODUCTS = 100
const ORDER_PRODUCTS = 500
const ORDER_BUYERS = 500
const FLASH = { stock: 200, buyers: 2_000, concurrency: 100 }
/** Gate on, off, off, on: a drift in the machine's load over the sales weighs on both variants alike. */
const FLASH_ORDER = ['on', 'off', 'off', 'on'] as const
const PRICE = 1_000
const DOC = new URL('../docs/benchmarks.md', import.meta.url).pathname

const benchStarted = performance.now()
const progress = (line: string) => {
  const at = ((performance.now() - benchStarted) / 1000).toFixed(1).padStart(5)
  process.stdout.write(`[${at} s] ${line}\n`)
}

const databaseName = decodeURIComponent(new URL(DATABASE_URL).pathname.slice(1))

/** The bench's database and Redis namespace start empty every run, so runs compare like with like. */
async function resetBenchState(redisUrl: string) {
  const server = new URL(DATABASE_URL)
  server.pathname = '/'
  const connection = await mysql.createConnection({ uri: server.toString() })
  try {
    await connection.query(`DROP DATABASE IF EXISTS \`${databaseName.replaceAll('`', '')}\``)
  } finally {
    await connection.end()
  }
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    const prefix = redisKeyPrefix(DATABASE_URL)
    let cursor = '0'
    // Bounded: 10,000 rounds of 1,000 keys is far more than the bench ever leaves behind.
    for (let round = 0; round < 10_000; round++) {
      const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1_000)
      if (keys.length > 0) await redis.unlink(...keys)
      cursor = nextCursor
      if (cursor === '0') break
    }
  } finally {
    redis.disconnect()
  }
}

async function machineFacts(db: Db, redisUrl: string, nginx: string): Promise<Machine> {
  const [rows] = (await db.execute('SELECT VERSION() AS v')) as unknown as [Array<{ v: string }>]
  const redis = new Redis(redisUrl, { lazyConnect: true })
  await redis.connect()
  const info = await redis.info('server')
  redis.disconnect()
  const mariadb = rows[0]?.v ?? 'unknown'
  return {
    date: new Date().toISOString(),
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: totalmem() / 2 ** 30,
    node: process.version,
    mariadb: /mariadb/i.test(mariadb) ? `MariaDB ${mariadb}` : `MySQL ${mariadb}`,
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown',
    nginx: nginxVersion(nginx).replace(/^nginx version: /, ''),
  }
}

const roundRobin = <T>(items: T[]) => {
  let i = 0
  return () => items[i++ % items.length] as T
}

const orderRequest = (buyer: Buyer, productId: number): BenchRequest => ({
  method: 'POST',
  path: '/v1/orders',
  headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${buyer.token}` },
  body: JSON.stringify({ items: [{ productId, quantity: 1 }] }),
})

const statusText = (statuses: Record<string, number>) =>
  Object.entries(statuses)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ')

const describe = (o: Outcome, unit: string) =>
  `${o.perSecond.toFixed(0)} ${unit}, p50 ${o.p50Ms.toFixed(1)} ms, p99 ${o.p99Ms.toFixed(1)} ms (${statusText(o.statuses)})`

/** Anything but the expected statuses, or any connection error, makes the run worthless: stop loudly. */
function expectOnly(label: string, s: Sample | Outcome, allowed: string[]) {
  const unexpected = Object.entries(s.statuses).filter(([k]) => !allowed.includes(k))
  if (unexpected.length > 0 || s.errors > 0) {
    throw new Error(
      `${label}: unexpected responses {${statusText(Object.fromEntries(unexpected))}}, ${s.errors} connection errors`,
    )
  }
}

async function assertInvariants(db: Db, label: string, scope: { productIds: number[]; userIds: number[] }) {
  const violations = await checkInvariants(db, scope)
  if (violations.length > 0) {
    throw new Error(`INVARIANTS VIOLATED after ${label}:\n  ${violations.slice(0, 50).join('\n  ')}`)
  }
  progress(
    `invariants hold after ${label} (${scope.productIds.length} products, ${scope.userIds.length} users)`,
  )
}

/** A counter from the service's /metrics (not routed by nginx, so read on its own port). */
async function scrapeCounter(port: number, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels))
  return line ? Number(line.split(' ').at(-1)) : 0
}

const must = (value: number | undefined, what: string) => {
  if (value === undefined) throw new Error(`${what} missing`)
  return value
}

async function main() {
  if (!/bench/.test(databaseName)) {
    throw new Error(`BENCH_DATABASE_URL must name a database of the bench's own (got "${databaseName}")`)
  }
  const benchEnv = {
    ...process.env,
    DATABASE_URL,
    RATE_LIMIT_PER_SECOND: '0',
    LOG_LEVEL: 'warn',
    NODE_ENV: 'development',
  }
  const config = loadConfig(benchEnv)
  const nginxBinary = ensureNginx()

  progress(`resetting database ${databaseName} and its Redis namespace, applying migrations`)
  await resetBenchState(config.redisUrl)
  await applyMigrations(config)
  const database = createDatabase({ url: DATABASE_URL })
  const { db } = database
  const raw = createRawOrders(DATABASE_URL)
  const nginxDir = mkdtempSync(join(tmpdir(), 'bench-nginx-'))
  try {
    const machine = await machineFacts(db, config.redisUrl, nginxBinary)

    progress('creating products and funded buyers')
    const readProducts = await makeProducts(db, READ_PRODUCTS, { price: 39_000, stock: 1_000 })
    const orderProducts = await makeProducts(db, ORDER_PRODUCTS, { price: PRICE, stock: 1_000_000 })
    const rawProducts = await makeProducts(db, ORDER_PRODUCTS, { price: PRICE, stock: 1_000_000 })
    const flashProducts = await makeProducts(db, FLASH_ORDER.length, { price: PRICE, stock: FLASH.stock })
    const orderBuyers = await makeBuyers(db, config.jwtSecret, ORDER_BUYERS, 10_000_000)
    const rawBuyers = await makeBuyers(db, config.jwtSecret, ORDER_BUYERS, 10_000_000)
    // Each flash buyer can pay for exactly one unit: the sale's outcome is decided by stock alone.
    const flashBuyers: Buyer[][] = []
    for (const _ of FLASH_ORDER) flashBuyers.push(await makeBuyers(db, config.jwtSecret, FLASH.buyers, PRICE))

    progress('starting the service (stock gate on), the service with the gate off, the ceiling app, nginx')
    const ports = await Promise.all(Array.from({ length: 6 }, freePort))
    if (ports.length !== new Set(ports).size)
      throw new Error('the kernel handed out one port twice; run again')
    const nextPort = () => must(ports.shift(), 'a free port')
    const [servicePort, noGatePort, ceilingPort] = [nextPort(), nextPort(), nextPort()]
    const [viaService, viaCeiling, viaNoGate] = [nextPort(), nextPort(), nextPort()]
    const serviceFile = new URL('./bench/service.ts', import.meta.url).pathname
    const service = startTsx('service', serviceFile, { ...benchEnv, PORT: String(servicePort) })
    const noGateService = startTsx('service without stock gate', serviceFile, {
      ...benchEnv,
      PORT: String(noGatePort),
      BENCH_STOCK_GATE: 'off',
    })
    await waitForOk(`http://127.0.0.1:${servicePort}/health/ready`, service)
    await waitForOk(`http://127.0.0.1:${noGatePort}/health/ready`, noGateService)
    const sample = await fetch(`http://127.0.0.1:${servicePort}/v1/products/${readProducts[0]}`)
    const productBody = await sample.text()
    if (sample.status !== 200) throw new Error(`product read failed: ${sample.status} ${productBody}`)
    const ceiling = startTsx('ceiling', new URL('./bench/ceiling-app.ts', import.meta.url).pathname, {
      ...process.env,
      PORT: String(ceilingPort),
      BENCH_CEILING_BODY: productBody,
    })
    await waitForOk(`http://127.0.0.1:${ceilingPort}/health/ready`, ceiling)
    const nginx: Child = startNginx(nginxBinary, nginxDir, [
      { name: 'service', listen: viaService, upstream: servicePort },
      { name: 'ceiling', listen: viaCeiling, upstream: ceilingPort },
      { name: 'service_no_gate', listen: viaNoGate, upstream: noGatePort },
    ])
    for (const port of [viaService, viaCeiling, viaNoGate])
      await waitForOk(`http://127.0.0.1:${port}/health/ready`, nginx)

    const cpuGroups = (): CpuGroup[] => [
      { name: 'service', pid: service.process.pid },
      { name: 'service, gate off', pid: noGateService.process.pid },
      { name: 'ceiling app', pid: ceiling.process.pid },
      { name: 'nginx', pid: nginx.process.pid, tree: true },
      { name: 'MariaDB', comm: /^(mariadbd|mysqld)$/ },
      { name: 'Redis', comm: /^redis-server$/ },
      { name: 'bench (load)', pid: process.pid },
    ]
    const url = (port: number) => `http://127.0.0.1:${port}`

    /** Alternating rounds of two sides; each side's samples and CPU use are summed over its rounds. */
    const alternate = async (
      label: string,
      sides: Array<{ name: string; round: () => Promise<Sample>; allowed: string[] }>,
    ) => {
      const meters = sides.map(() => createCpuMeter(cpuGroups))
      const samples: Sample[][] = sides.map(() => [])
      for (let round = 1; round <= ROUNDS; round++) {
        for (const [i, side] of sides.entries()) {
          await sleep(SETTLE_MS)
          const s = await (meters[i] as ReturnType<typeof createCpuMeter>).measure(side.round)
          expectOnly(`${label}, ${side.name}`, s, side.allowed)
          samples[i]?.push(s)
        }
        progress(`  round ${round}/${ROUNDS} done`)
      }
      return sides.map((_, i) => ({
        samples: samples[i] ?? [],
        cpu: (meters[i] as ReturnType<typeof createCpuMeter>).result(),
      }))
    }

    // 1. Product read: the service (info cache, 500 ms stock cache) against a bare Hono app.
    const nextReadProduct = roundRobin(readProducts)
    const nextRead = (): BenchRequest => ({ method: 'GET', path: `/v1/products/${nextReadProduct()}` })
    const readRound =
      (port: number, seconds = ROUND_SECONDS) =>
      () =>
        runTimed({ url: url(port), connections: CONNECTIONS, seconds, next: nextRead })
    progress(`product read: warm-up ${WARMUP_SECONDS} s each`)
    expectOnly('read warm-up, ceiling', await readRound(viaCeiling, WARMUP_SECONDS)(), ['200'])
    expectOnly('read warm-up, service', await readRound(viaService, WARMUP_SECONDS)(), ['200'])
    progress(`product read: ${ROUNDS} rounds of ${ROUND_SECONDS} s each side, ${CONNECTIONS} connections`)
    const stockLoadsBefore = await scrapeCounter(servicePort, 'cache_loads_total', 'cache="product-stock"')
    const [readCeilingRun, readServiceRun] = await alternate('product read', [
      { name: 'ceiling', round: readRound(viaCeiling), allowed: ['200'] },
      { name: 'service', round: readRound(viaService), allowed: ['200'] },
    ])
    const stockLoads =
      (await scrapeCounter(servicePort, 'cache_loads_total', 'cache="product-stock"')) - stockLoadsBefore
    const read = {
      ceiling: measured(readCeilingRun),
      service: measured(readServiceRun),
      bodyBytes: Buffer.byteLength(productBody),
      stockLoadsPerSecond: stockLoads / (readServiceRun?.cpu.seconds || 1),
    }
    progress(`  ceiling: ${describe(read.ceiling.outcome, 'req/s')}`)
    progress(`  service: ${describe(read.service.outcome, 'req/s')}`)

    // 2. Order placement without contention: distinct buyers and products, against the same SQL raw.
    const nextBuyer = roundRobin(orderBuyers)
    const nextProduct = roundRobin(orderProducts)
    const nextOrder = () => orderRequest(nextBuyer(), nextProduct())
    const orderRound =
      (port: number, seconds = ROUND_SECONDS) =>
      () =>
        runTimed({ url: url(port), connections: CONNECTIONS, seconds, next: nextOrder })
    const nextRawBuyer = roundRobin(rawBuyers)
    const nextRawProduct = roundRobin(rawProducts)
    const rawRound =
      (seconds = ROUND_SECONDS) =>
      () =>
        raw.run({
          concurrency: CONNECTIONS,
          seconds,
          next: () => ({ userId: nextRawBuyer().userId, productId: nextRawProduct() }),
        })
    progress(`order placement: warm-up ${WARMUP_SECONDS} s each`)
    expectOnly('order warm-up, service', await orderRound(viaService, WARMUP_SECONDS)(), ['201'])
    expectOnly('order warm-up, raw SQL', await rawRound(WARMUP_SECONDS)(), ['201'])
    progress(
      `order placement: ${ROUNDS} rounds of ${ROUND_SECONDS} s each side, ${CONNECTIONS} connections ` +
        `(raw SQL: ${CONNECTIONS} loops, pool of ${SERVICE_POOL_SIZE})`,
    )
    const [orderServiceRun, orderRawRun] = await alternate('order placement', [
      { name: 'service', round: orderRound(viaService), allowed: ['201'] },
      { name: 'raw SQL', round: rawRound(), allowed: ['201'] },
    ])
    const orders = { service: measured(orderServiceRun, '201'), ceiling: measured(orderRawRun, '201') }
    progress(`  service: ${describe(orders.service.outcome, 'orders/s')}`)
    progress(`  raw SQL: ${describe(orders.ceiling.outcome, 'orders/s')}`)
    await assertInvariants(db, 'order placement', {
      productIds: [...orderProducts, ...rawProducts],
      userIds: [...orderBuyers, ...rawBuyers].map((b) => b.userId),
    })

    // 3. Flash sale on one hot product, with the stock gate and without it.
    progress(`flash sale: warm-up ${WARMUP_SECONDS} s of ordinary orders on the service with the gate off`)
    expectOnly('flash warm-up, gate off', await orderRound(viaNoGate, WARMUP_SECONDS)(), ['201'])
    const flashMeters = { on: createCpuMeter(cpuGroups), off: createCpuMeter(cpuGroups) }
    const flashSamples: Record<'on' | 'off', Sample[]> = { on: [], off: [] }
    for (const [i, variant] of FLASH_ORDER.entries()) {
      const productId = must(flashProducts[i], 'flash product')
      const buyers = flashBuyers[i] ?? []
      const port = variant === 'on' ? viaService : viaNoGate
      const label = `flash sale ${i + 1}/${FLASH_ORDER.length}, stock gate ${variant}`
      progress(`${label}: ${buyers.length} buyers, stock ${FLASH.stock}, ${FLASH.concurrency} at a time`)
      await sleep(SETTLE_MS)
      const s = await flashMeters[variant].measure(() =>
        runEach({
          port,
          concurrency: FLASH.concurrency,
          requests: buyers.map((b) => orderRequest(b, productId)),
        }),
      )
      progress(`  whole sale ${s.seconds.toFixed(2)} s; ${describe(summarize([s]), 'req/s')}`)
      expectOnly(label, s, ['201', '409 INSUFFICIENT_STOCK'])
      const sold = s.statuses['201'] ?? 0
      if (sold !== FLASH.stock)
        throw new Error(`${label}: ${sold} orders succeeded, expected exactly ${FLASH.stock}`)
      const [rows] = (await db.execute(
        `SELECT stock FROM products WHERE id = ${Number(productId)}`,
      )) as unknown as [Array<{ stock: number }>]
      if (rows[0]?.stock !== 0) throw new Error(`${label}: stock left ${rows[0]?.stock}, expected 0`)
      await assertInvariants(db, label, { productIds: [productId], userIds: buyers.map((b) => b.userId) })
      flashSamples[variant].push(s)
    }
    const flashSales = (variant: 'on' | 'off'): FlashSales => ({
      outcome: summarize(flashSamples[variant]),
      cpu: flashMeters[variant].result(),
      secondsEach: flashSamples[variant].map((s) => s.seconds),
    })
    await assertInvariants(db, 'the whole bench', {
      productIds: [...orderProducts, ...rawProducts, ...flashProducts],
      userIds: [...orderBuyers, ...rawBuyers, ...flashBuyers.flat()].map((b) => b.userId),
    })

    const results: Results = {
      machine,
      settings: {
        connections: CONNECTIONS,
        rounds: ROUNDS,
        roundSeconds: ROUND_SECONDS,
        warmupSeconds: WARMUP_SECONDS,
        readProducts: READ_PRODUCTS,
        orderProducts: ORDER_PRODUCTS,
        orderBuyers: ORDER_BUYERS,
        poolSize: SERVICE_POOL_SIZE,
        flash: { ...FLASH, order: FLASH_ORDER.join(', ') },
      },
      read,
      orders,
      flash: { gate: flashSales('on'), noGate: flashSales('off') },
      totalSeconds: (performance.now() - benchStarted) / 1000,
    }
    process.stdout.write(`\n${resultTables(results)}\n\n${statusLines(results)}\n\n`)
    writeBenchmarksDoc(DOC, results)
    progress(`wrote ${DOC}`)
  } finally {
    await stopAll()
    rmSync(nginxDir, { recursive: true, force: true })
    await Promise.allSettled([raw.close(), database.close()])
  }
}

function measured(run: { samples: Sample[]; cpu: CpuUse } | undefined, counted?: string): Measured {
  if (!run) throw new Error('a measurement is missing')
  return { outcome: summarize(run.samples, counted), cpu: run.cpu }
}

installCleanup(stopAll)
try {
  await main()
  process.exit(0)
} catch (error) {
  process.stderr.write(`\nbench failed: ${error instanceof Error ? error.message : String(error)}\n`)
  await stopAll()
  process.exit(1)
}
