import { parseArgs } from 'node:util'
import amqp from 'amqplib'
import { ConfigError, loadConfig, redactUrl } from '../shared/config'
import { declareTopology, eventTopology } from '../shared/events/topology'
import { createLogger } from '../shared/logger'

/**
 * `npm run events:upgrade`: brings the RabbitMQ topology to what this release declares, migrating every
 * queue that exists with other arguments (start-up only migrates those in the previous release's shape).
 * No message is lost; a queue with consumers is left for later, since deleting it would drop what they
 * hold. Prints what it did as one JSON object; exits 1 if anything was left as it is.
 *
 *   npm run events:upgrade -- [--url amqp://…] [--suffix .staging]
 */
const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    suffix: { type: 'string', default: '' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (values.help) {
  process.stderr.write(
    [
      'Usage: npm run events:upgrade -- [options]',
      '  --url URL     RabbitMQ URL (default: RABBITMQ_URL, else amqp://guest:guest@127.0.0.1:5672)',
      '  --suffix S    topology name suffix, for side-by-side environments on one broker',
      '',
    ].join('\n'),
  )
  process.exit(0)
}

let config: ReturnType<typeof loadConfig>
try {
  // The variables the topology depends on; nothing else (no JWT secret is needed to talk to RabbitMQ).
  const limits = Object.entries(process.env).filter(([key]) => key.startsWith('DATA_PLATFORM_'))
  config = loadConfig({ RABBITMQ_URL: process.env.RABBITMQ_URL, ...Object.fromEntries(limits) })
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  process.stderr.write(`${error.message}\n`)
  process.exit(2)
}

const url = values.url ?? config.rabbitmqUrl
const log = createLogger('info', { script: 'events-upgrade' }, (line) => process.stderr.write(line))
const topology = eventTopology(values.suffix, config.dataPlatform)
log.info('upgrading the RabbitMQ topology', { url: redactUrl(url), exchange: topology.exchange })
const connection = await amqp.connect(url)
try {
  const report = await declareTopology(connection, topology, log, { migrate: 'any' })
  process.stdout.write(`${JSON.stringify(report)}\n`)
  process.exitCode = report.kept.length > 0 || report.interrupted.length > 0 ? 1 : 0
} finally {
  await connection.close()
}
