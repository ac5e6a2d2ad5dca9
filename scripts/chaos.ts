import { randomInt } from 'node:crypto'
import { parseArgs } from 'node:util'
import { loadConfig } from '../shared/config'
import { runChaos } from './chaos/run'

/**
 * `npm run chaos`: the fault suite. Starts `npm start` with MySQL, Redis and RabbitMQ behind TCP proxies
 * of its own, sends a mixed load with deliberate replays while it cuts, delays and blackholes each
 * dependency in turn, then checks what must hold (see docs/chaos.md). Exits 1 if any check fails.
 *
 *   npm run chaos -- [--short] [--seed N] [--keep]
 */
const { values } = parseArgs({
  options: {
    short: { type: 'boolean', default: false },
    seed: { type: 'string' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (values.help) {
  process.stdout.write(
    [
      'Usage: npm run chaos -- [options]',
      '  --short     the short form (under 90 s) that npm test runs',
      '  --seed N    repeat a run: the same users, products and choice of requests',
      '  --keep      keep the run database (commerce_chaos_<id>) for a look afterwards',
      'Targets: DATABASE_URL (host, port and user only), REDIS_URL, RABBITMQ_URL, as for npm start.',
      '',
    ].join('\n'),
  )
  process.exit(0)
}

const seed = values.seed === undefined ? randomInt(1, 2 ** 31) : Number(values.seed)
if (!Number.isSafeInteger(seed)) {
  process.stderr.write('--seed must be a whole number\n')
  process.exit(2)
}

try {
  const config = loadConfig()
  const result = await runChaos({
    short: values.short,
    seed,
    keep: values.keep,
    targets: { databaseUrl: config.databaseUrl, redisUrl: config.redisUrl, rabbitmqUrl: config.rabbitmqUrl },
    print: (line) => process.stdout.write(`${line}\n`),
  })
  process.exit(result.ok ? 0 : 1)
} catch (error) {
  process.stderr.write(
    `chaos: the suite itself failed: ${error instanceof Error ? error.stack : String(error)}\n`,
  )
  process.exit(2)
}
