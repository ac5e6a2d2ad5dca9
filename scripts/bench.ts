import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { ENV_VARS, loadConfig } from '../shared/config'
import { createDatabase, type Db } from '../shared/db/client'
import { applyMigrations } from '../shared/runtime/deps'
import { workerNames } from '../shared/runtime/discover'
import { BENCH_VHOST, deleteQueues, ensureVhost, rabbitmqVersion, vhostUrl } from './bench/broker'
import { assertInvariants, type BenchContext, GROUP, progress, secondsSinceStart } from './bench/context'
import type { CpuGroup } from './bench/cpu'
import { makeFixtures, serviceScope } from './bench/fixtures'
import { ensureNginx, nginxVersion, startNginx } from './bench/nginx'
import { freePorts, installCleanup, startTsx, stopAll, waitForOk } from './bench/processes'
import { type Machine, resultTables, type ScenarioReport, writeBenchmarksDoc } from './bench/report'
import { coldStartAndSize } from './bench/scenarios/cold-start'
import { couponBurst } from './bench/scenarios/coupon-burst'
import { eventLatency } from './bench/scenarios/event-latency'
import { flashSales } from './bench/scenarios/flash-sale'
import { hotProduct } from './bench/scenarios/hot-product'
import { orders } from './bench/scenarios/orders'
import { productRead } from './bench/scenarios/product-read'
import { describeProcesses, startService } from './bench/service'
import { profileFromArgs } from './bench/settings'
import { databaseNameOf, ensureMaxConnections, resetBenchState } from './bench/state'

/**
 * `npm run bench` (`-- --quick` for a shorter run of everything): the only place speed is measured.
 * The service runs as `npm start` runs it, against a database, a Redis namespace and a RabbitMQ vhost of
 * the bench's own; every scenario is paired with a ceiling measured in the same run, through the same
 * nginx, in alternating rounds, so that whatever else the shared machine does weighs on both alike. The
 * ratios are the result. docs/benchmarks.md has the last recorded full run and the method.
 */

const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/commerce_bench'
const DOC = new URL('../docs/benchmarks.md', import.meta.url).pathname

/**
 * The service's environment: the caller's, minus every application variable but where the services are
 * (and WEB_CONCURRENCY, which sizes both sides alike), plus the bench's own database and vhost. Everything
 * else is the default a new user gets: LOG_LEVEL info with the access log, the default pools.
 */
function serviceEnvironment(): NodeJS.ProcessEnv {
  const kept = new Set(['REDIS_URL', 'RABBITMQ_URL', 'JWT_SECRET', 'WEB_CONCURRENCY'])
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !ENV_VARS.includes(key) || kept.has(key)),
  )
  const base = loadConfig(env)
  return {
    ...env,
    DATABASE_URL,
    RABBITMQ_URL: vhostUrl(base.rabbitmqUrl, BENCH_VHOST),
    RATE_LIMIT_PER_SECOND: '0',
    NODE_ENV: 'development',
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
    rabbitmq: rabbitmqVersion(),
    nginx: nginxVersion(nginx).replace(/^nginx version: /, ''),
  }
}

const ids = (items: Array<{ id: number }>) => items.map((p) => p.id)

async function main() {
  const profile = profileFromArgs(process.argv.slice(2))
  const command = profile.name === 'quick' ? 'npm run bench -- --quick' : 'npm run bench'
  if (!/bench/.test(databaseNameOf(DATABASE_URL))) {
    throw new Error(
      `BENCH_DATABASE_URL must name a database of the bench's own (got "${databaseNameOf(DATABASE_URL)}")`,
    )
  }
  const env = serviceEnvironment()
  const config = loadConfig(env)
  const brokerUrl = config.rabbitmqUrl
  const nginxBinary = ensureNginx()
  const notes: string[] = []

  progress(
    `${command}: resetting database ${databaseNameOf(DATABASE_URL)}, its Redis namespace and vhost ${BENCH_VHOST}`,
  )
  ensureVhost(brokerUrl, BENCH_VHOST)
  await resetBenchState(DATABASE_URL, config.redisUrl)
  await deleteQueues(brokerUrl)
  await applyMigrations(config)
  // The hot-row ceiling's connections, the HTTP workers' pools (10 + 5 each under npm start), the two
  // workers', the bench's own, and room for whatever else uses the server.
  const maxConnections = await ensureMaxConnections(
    DATABASE_URL,
    profile.hot.connections + config.webConcurrency * 15 + 2 * 5 + 10 + 100,
  )
  if (maxConnections.during !== maxConnections.before) {
    const note = `MariaDB's max_connections raised from ${maxConnections.before} to ${maxConnections.during} for the run, then put back`
    notes.push(note)
    progress(note)
  }
  const database = createDatabase({ url: DATABASE_URL, connectionLimit: 10 })
  const { db } = database
  const work = mkdtempSync(join(tmpdir(), 'bench-'))
  let failed = true
  try {
    progress('creating products, funded buyers and coupon users')
    const f = await makeFixtures(db, config.jwtSecret, profile)

    const [servicePort = 0, ceilingPort = 0, viaService = 0, viaCeiling = 0] = await freePorts(4)
    progress(
      `starting the service as npm start runs it (WEB_CONCURRENCY ${config.webConcurrency}), output to ${work}/service.log`,
    )
    const service = await startService({
      env: { ...env, PORT: String(servicePort) },
      port: servicePort,
      webConcurrency: config.webConcurrency,
      logFile: join(work, 'service.log'),
    })
    progress(`  ${describeProcesses(service.processes)}`)
    const first = await fetch(`http://127.0.0.1:${servicePort}/v1/products/${f.read[0]?.id}`)
    const productBody = await first.text()
    if (first.status !== 200) throw new Error(`product read failed: ${first.status} ${productBody}`)
    const ceiling = startTsx('ceiling app', new URL('./bench/ceiling-app.ts', import.meta.url).pathname, {
      env: {
        ...process.env,
        PORT: String(ceilingPort),
        BENCH_CEILING_BODY: productBody,
        BENCH_CEILING_WORKERS: String(config.webConcurrency),
      },
    })
    await waitForOk(`http://127.0.0.1:${ceilingPort}/health/ready`, ceiling)
    await ceiling.waitFor(/ceiling app: \d+ workers/)
    const nginx = startNginx(nginxBinary, join(work, 'nginx'), [
      { name: 'service', listen: viaService, upstream: servicePort },
      { name: 'ceiling', listen: viaCeiling, upstream: ceilingPort },
    ])
    for (const port of [viaService, viaCeiling])
      await waitForOk(`http://127.0.0.1:${port}/health/ready`, nginx)
    const machine = await machineFacts(db, config.redisUrl, nginxBinary)

    const cpuGroups = (): CpuGroup[] => [
      { name: GROUP.http, pids: service.processes.http },
      ...workerNames().map((name) => ({ name, pids: [service.processes.workers[name] ?? -1] })),
      { name: GROUP.primary, tree: service.process.pid ?? -1 },
      { name: GROUP.ceiling, tree: ceiling.process.pid ?? -1 },
      { name: GROUP.nginx, tree: nginx.process.pid ?? -1 },
      { name: GROUP.mariadb, comm: /^(mariadbd|mysqld)$/ },
      { name: GROUP.redis, comm: /^redis-server$/ },
      { name: GROUP.rabbitmq, comm: /^(beam\.smp|erl_child_setup|epmd|inet_gethost)$/ },
      { name: GROUP.bench, pids: [process.pid] },
    ]
    const ctx: BenchContext = {
      profile,
      db,
      cpuGroups,
      via: { service: viaService, ceiling: viaCeiling },
      checkService: (after) => service.assertSameProcesses(after),
    }

    const reports: ScenarioReport[] = []
    reports.push(await productRead(ctx, ids(f.read), Buffer.byteLength(productBody)))
    reports.push(await couponBurst(ctx, f.couponUsers, ids(f.read)))
    const placed = await orders(ctx, { ...f.orders, databaseUrl: DATABASE_URL, brokerUrl })
    reports.push(placed.report)
    reports.push(
      await hotProduct(ctx, {
        productId: f.hot.product.id,
        buyers: f.hot.buyers,
        rawProductId: f.hot.rawProduct.id,
        databaseUrl: DATABASE_URL,
      }),
    )
    reports.push(
      await eventLatency(ctx, {
        ...f.events,
        maxOrdersPerSecond: placed.servicePerSecond,
        brokerUrl,
      }),
    )
    reports.push(await flashSales(ctx, f.sales))

    progress('stopping the service, the ceiling app and nginx')
    await Promise.all([nginx.stop(), ceiling.stop()])
    await service.stop()
    reports.push(
      ...(await coldStartAndSize(profile.coldStart.runs, profile.coldStart.idleSeconds, env, work)),
    )

    await assertInvariants(db, 'the whole bench', serviceScope(f))

    const results = { command, machine, notes, scenarios: reports, totalSeconds: secondsSinceStart() }
    process.stdout.write(`\n${resultTables(results)}\n\n`)
    if (profile.name === 'full') {
      writeBenchmarksDoc(DOC, results)
      progress(`wrote ${DOC}`)
    } else {
      progress('quick run: docs/benchmarks.md is written by the full run only')
    }
    failed = false
  } finally {
    await stopAll()
    await Promise.allSettled([database.close(), maxConnections.restore()])
    if (failed) process.stderr.write(`the service's output and the bench's temp files are kept in ${work}\n`)
    else rmSync(work, { recursive: true, force: true })
  }
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
