import { parseArgs } from 'node:util'
import type { Channel } from 'amqplib'
import { redactUrl } from '../shared/config'
import { connectBroker } from '../shared/events/amqp'
import { declareTopology, eventTopology } from '../shared/events/topology'
import { createLogger } from '../shared/logger'

/**
 * `npm run consume:data-platform`: a reference consumer for the data platform. Reads the data.platform
 * queue and prints each event's body as one line of JSON (NDJSON) on stdout, acknowledging a message only
 * once its line is written, so a crash never drops one (it may print one twice: dedupe on eventId).
 * Progress and errors go to stderr as JSON log lines.
 *
 *   npm run consume:data-platform -- [--url amqp://…] [--prefetch 100] [--max N] [--suffix .staging]
 */
const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    prefetch: { type: 'string', default: '100' },
    max: { type: 'string' },
    suffix: { type: 'string', default: '' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (values.help) {
  process.stderr.write(
    [
      'Usage: npm run consume:data-platform -- [options]',
      '  --url URL        RabbitMQ URL (default: RABBITMQ_URL, else amqp://guest:guest@127.0.0.1:5672)',
      '  --prefetch N     unacknowledged messages in flight (default 100)',
      '  --max N          exit after printing N events',
      '  --suffix S       topology name suffix, for side-by-side environments on one broker',
      '',
    ].join('\n'),
  )
  process.exit(0)
}

const url = values.url ?? process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const prefetch = Number(values.prefetch)
const max = values.max === undefined ? Number.POSITIVE_INFINITY : Number(values.max)
if (
  !Number.isInteger(prefetch) ||
  prefetch < 1 ||
  !(max === Number.POSITIVE_INFINITY || Number.isInteger(max))
) {
  process.stderr.write('--prefetch and --max must be whole numbers\n')
  process.exit(2)
}

const log = createLogger('info', { script: 'consume-data-platform' }, (line) => process.stderr.write(line))
const topology = eventTopology(values.suffix)
const queue = topology.queues.dataPlatform
let printed = 0
let finishing = false
let current: Channel | undefined

/** Resolves once the line is handed to the OS, so that the ack never runs ahead of the output. */
const print = (line: string) =>
  new Promise<void>((resolve, reject) => {
    process.stdout.write(`${line}\n`, (error) => (error ? reject(error) : resolve()))
  })

const broker = await connectBroker({
  url,
  name: 'data-platform-reference-consumer',
  logger: log,
  setup: async (connection) => {
    await declareTopology(connection, topology, log)
    const channel: Channel = await connection.createChannel()
    current = channel
    channel.on('error', (error: Error) => log.warn('channel error', { error }))
    await channel.prefetch(prefetch)
    // One at a time in arrival order: the output keeps the queue's order and each ack follows its line.
    let chain = Promise.resolve()
    await channel.consume(queue, (message) => {
      if (message === null) return
      chain = chain
        .then(async () => {
          if (printed >= max) return
          let body: unknown
          try {
            body = JSON.parse(message.content.toString('utf8'))
          } catch (error) {
            log.error('not JSON; sending it to the dead-letter queue', {
              messageId: message.properties.messageId,
              error,
            })
            channel.nack(message, false, false)
            return
          }
          await print(JSON.stringify(body))
          channel.ack(message)
          printed++
          if (printed % 1000 === 0) log.info('progress', { printed })
          if (printed >= max) await finish('--max reached')
        })
        .catch(async (error: unknown) => {
          // stdout is gone (a closed pipe): unacknowledged messages go back to the queue for the next run.
          log.error('cannot write the output', { error })
          await finish('output failed')
        })
    })
    log.info('consuming', { queue, url: redactUrl(url), prefetch })
  },
})

async function finish(reason: string) {
  if (finishing) return
  finishing = true
  log.info('stopping', { reason, printed })
  // Closing the channel first waits for the broker to take every ack sent on it; closing only the
  // connection could overtake the last acks and have those messages delivered again.
  await current?.close().catch(() => undefined)
  await broker.close()
  process.exit(0)
}

process.once('SIGINT', () => void finish('SIGINT'))
process.once('SIGTERM', () => void finish('SIGTERM'))
