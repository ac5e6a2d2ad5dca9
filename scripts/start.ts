import cluster, { type Worker } from 'node:cluster'
import { fileURLToPath } from 'node:url'
import amqp from 'amqplib'
import { loadConfig, redactUrl } from '../shared/config'
import { createDatabase } from '../shared/db/client'
import { serveClusterMetrics } from '../shared/runtime/cluster-metrics'
import { applyMigrations, StartupError, unreachable } from '../shared/runtime/deps'
import { discoverFunctions, discoverWorkers } from '../shared/runtime/discover'
import { exitOnStartupError } from '../shared/runtime/serve'
import { SHUTDOWN_DEADLINE_MS } from '../shared/runtime/server'
import { describeSeed, seedWhenEmpty } from './lib/seed'

/**
 * `npm start`: the single-host default, in the production shape. This process (the primary) migrates,
 * seeds demo data into an empty database, then starts its children with node:cluster:
 *
 * - WEB_CONCURRENCY HTTP workers (default: one per available core), each serving every function under
 *   functions/ on PORT; the kernel spreads connections over them;
 * - one process per worker folder (the outbox relay and the statistics consumer), as in containers.
 *
 * A child that dies is started again (after a second, so a crash loop cannot spin). SIGTERM or SIGINT
 * drains them all (HTTP first: requests may still write outbox rows; then the workers) and exits 0.
 * GET /metrics on any HTTP worker shows the whole cluster, added up here.
 */

/** HTTP workers each serve every function, so they get larger pools than a one-function process. */
const HTTP_WORKER_POOLS = { DATABASE_POOL_SIZE: '10', DATABASE_REPLICA_POOL_SIZE: '5' }
const RESTART_DELAY_MS = 1_000

async function checkRabbitMq(url: string) {
  try {
    const connection = await amqp.connect(url, { timeout: 3_000 })
    await connection.close()
  } catch (error) {
    throw unreachable('RabbitMQ', redactUrl(url), 'RABBITMQ_URL', error)
  }
}

async function seed(databaseUrl: string) {
  const database = createDatabase({ url: databaseUrl, connectionLimit: 2 })
  try {
    return await seedWhenEmpty(database.db)
  } finally {
    await database.close()
  }
}

type Child = { role: 'http' } | { role: 'worker'; name: string }
const describe = (child: Child) => (child.role === 'http' ? 'HTTP worker' : child.name)

try {
  const config = loadConfig()
  await checkRabbitMq(config.rabbitmqUrl)
  await applyMigrations(config)
  const seeded = await seed(config.databaseUrl)
  if (seeded) process.stdout.write(`${describeSeed(seeded)}\n`)
  const functions = await discoverFunctions()
  const workers = await discoverWorkers()

  cluster.setupPrimary({ exec: fileURLToPath(new URL('./start-child.ts', import.meta.url)) })
  serveClusterMetrics()
  let stopping = false
  const children = new Map<Worker, Child>()
  const pools = Object.fromEntries(Object.entries(HTTP_WORKER_POOLS).filter(([key]) => !process.env[key]))

  /** The port the HTTP workers listen on (PORT=0: one the kernel chose, shared by every worker). */
  let listening = config.port
  const start = (child: Child) =>
    new Promise<Worker>((resolve, reject) => {
      const env =
        child.role === 'http'
          ? { ...pools, START_ROLE: 'http' }
          : { START_ROLE: 'worker', START_WORKER: child.name }
      const worker = cluster.fork(env)
      children.set(worker, child)
      const onExit = (code: number | null) =>
        reject(new StartupError(`${describe(child)} exited (${code}) while starting`))
      worker.once('exit', onExit)
      worker.on('message', (message: unknown) => {
        const { type, port } = (message ?? {}) as { type?: unknown; port?: unknown }
        if (type !== 'commerce:ready') return
        if (typeof port === 'number') listening = port
        worker.off('exit', onExit)
        resolve(worker)
      })
    })

  cluster.on('exit', (worker, code, signal) => {
    const child = children.get(worker)
    children.delete(worker)
    if (stopping || !child) return
    process.stderr.write(
      `${describe(child)} (pid ${worker.process.pid}) exited (${signal ?? code}); restarting\n`,
    )
    setTimeout(() => {
      if (stopping) return
      start(child).then(
        (again) => process.stderr.write(`${describe(child)} restarted (pid ${again.process.pid})\n`),
        (error: unknown) => process.stderr.write(`${String(error)}\n`),
      )
    }, RESTART_DELAY_MS)
  })

  const http = await Promise.all(Array.from({ length: config.webConcurrency }, () => start({ role: 'http' })))
  const running = await Promise.all(workers.map((w) => start({ role: 'worker', name: w.name })))

  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    const deadline = setTimeout(() => process.exit(1), SHUTDOWN_DEADLINE_MS + 2_000)
    deadline.unref()
    const ended = (list: Worker[]) =>
      Promise.all(
        list.map(
          (worker) =>
            new Promise<void>((resolve) => {
              if (worker.isDead()) return resolve()
              worker.once('exit', () => resolve())
              worker.process.kill(signal)
            }),
        ),
      )
    const all = [...children.keys()]
    await ended(all.filter((w) => children.get(w)?.role === 'http'))
    await ended(all.filter((w) => children.get(w)?.role === 'worker'))
    process.exit(0)
  }
  process.once('SIGTERM', () => void stop('SIGTERM'))
  process.once('SIGINT', () => void stop('SIGTERM'))

  const base = `http://localhost:${listening}`
  process.stdout.write(
    [
      `Serving ${functions.length} functions on ${base} from ${http.length} HTTP worker processes (WEB_CONCURRENCY)`,
      `  pids ${http.map((w) => w.process.pid).join(', ')}; primary pid ${process.pid}`,
      ...functions.map((fn) => `  ${fn.route.method.padEnd(5)} ${fn.route.path.padEnd(40)} ${fn.name}`),
      `Running ${running.length} workers beside them, each in a process of its own`,
      ...workers.map(
        (w, i) => `  ${w.name.padEnd(16)} pid ${running[i]?.process.pid}  ${w.worker.description}`,
      ),
      `Metrics of every process: ${base}/metrics`,
      `Try: curl ${base}/v1/products`,
      'Tokens for the routes that need one: npm run token -- --sub 1   (add --role admin for /v1/admin)',
      '',
    ].join('\n'),
  )
} catch (error) {
  exitOnStartupError(error)
}
