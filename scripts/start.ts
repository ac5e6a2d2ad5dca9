import amqp from 'amqplib'
import { loadConfig, redactUrl } from '../shared/config'
import { createServiceApp } from '../shared/http/app'
import { applyMigrations, buildDeps, unreachable } from '../shared/runtime/deps'
import { discoverFunctions, discoverWorkers } from '../shared/runtime/discover'
import { exitOnStartupError } from '../shared/runtime/serve'
import { listen, onShutdown } from '../shared/runtime/server'
import { describeSeed, seedWhenEmpty } from './lib/seed'

/**
 * `npm start`: the single-host default. Migrates, seeds demo data into an empty database, then serves
 * every function under functions/ from this one process on PORT, with every worker (the folders with a
 * worker.ts: outbox relay, statistics consumer) running beside them.
 */
async function checkRabbitMq(url: string) {
  try {
    const connection = await amqp.connect(url, { timeout: 3_000 })
    await connection.close()
  } catch (error) {
    throw unreachable('RabbitMQ', redactUrl(url), 'RABBITMQ_URL', error)
  }
}

try {
  const config = loadConfig()
  await checkRabbitMq(config.rabbitmqUrl)
  await applyMigrations(config)
  const deps = await buildDeps(config, 'all-functions')
  const seeded = await seedWhenEmpty(deps.db)
  if (seeded) process.stdout.write(`${describeSeed(seeded)}\n`)

  const functions = await discoverFunctions()
  const app = createServiceApp(
    deps,
    functions.map((fn) => fn.create(deps)),
    { routes: functions },
  )
  const server = await listen(app, config.port)
  const workers = (await discoverWorkers()).map((w) => ({ ...w, running: w.create(deps) }))
  for (const w of workers) await w.running.start()
  onShutdown({
    logger: deps.logger,
    lifecycle: deps.lifecycle,
    // Requests first (they may still write outbox rows), then the workers, then the pools they all use.
    steps: [server.close, ...workers.map((w) => () => w.running.stop()), deps.close],
  })
  const base = `http://localhost:${server.port}`
  process.stdout.write(
    [
      `Serving ${functions.length} functions on ${base}`,
      ...functions.map((fn) => `  ${fn.route.method.padEnd(5)} ${fn.route.path.padEnd(40)} ${fn.name}`),
      `Running ${workers.length} workers beside them`,
      ...workers.map((w) => `  ${w.name.padEnd(16)} ${w.worker.description}`),
      `Try: curl ${base}/v1/products`,
      'Tokens for the routes that need one: npm run token -- --sub 1   (add --role admin for /v1/admin)',
      '',
    ].join('\n'),
  )
} catch (error) {
  exitOnStartupError(error)
}
