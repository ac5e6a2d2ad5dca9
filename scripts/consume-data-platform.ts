import { parseArgs } from 'node:util'
import type { Channel, ConsumeMessage } from 'amqplib'
import { ConfigError, loadConfig, redactUrl } from '../shared/config'
import { type BrokerConnection, connectBroker } from '../shared/events/amqp'
import { declareTopology, eventTopology } from '../shared/events/topology'
import { createLogger } from '../shared/logger'
import {
  businessDayWindow,
  createOffsetFile,
  parseEnd,
  parseStart,
  ReplayArgumentError,
  replayFilter,
  type StreamEnd,
  type StreamStart,
  streamOffsetArgument,
} from './lib/stream-replay'

/**
 * `npm run consume:data-platform`: the data platform's reference consumer, in two modes.
 *
 * Live (no --from): reads the data.platform queue and prints each event's body as one line of JSON
 * (NDJSON) on stdout, acknowledging a message only once its line is written, so a crash never drops one
 * (it may print one twice: dedupe on eventId).
 *
 * Replay (--from or --day): reads the data.platform.stream from a point and prints
 * `{"offset":N,"event":{…}}` per event, in stream order; it stops at --until, after --max events or after
 * --idle-exit seconds without a message, and with --offset-file a restarted replay resumes where the last
 * one stopped (or was killed). Reading the stream takes nothing away from anyone else.
 *
 * Progress and errors go to stderr as JSON log lines.
 */
const USAGE = [
  'Usage: npm run consume:data-platform -- [options]',
  '  --url URL            RabbitMQ URL (default: RABBITMQ_URL, else amqp://guest:guest@127.0.0.1:5672)',
  '  --prefetch N         unacknowledged messages in flight (default 100)',
  '  --max N              exit after printing N events',
  '  --suffix S           topology name suffix, for side-by-side environments on one broker',
  'Replay from the stream (prints {"offset":N,"event":{...}} per line):',
  '  --from P             first | last | next | <offset> | <ISO time with zone>, e.g. 2026-11-27T00:00:00+09:00',
  '  --until P            stop before <offset>, or after the events that occurred before <ISO time>',
  '  --day D              yesterday | today | YYYY-MM-DD in BUSINESS_TIMEZONE: --from and --until that day',
  '  --lateness SECONDS   with a time --until: stop at the first event that occurred this long after it (600)',
  '  --offset-file PATH   store the position after every event; a rerun with the same file resumes there',
  '  --idle-exit SECONDS  exit once no message arrived for this long (the stream has no end to wait for)',
  '',
].join('\n')

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    prefetch: { type: 'string', default: '100' },
    max: { type: 'string' },
    suffix: { type: 'string', default: '' },
    from: { type: 'string' },
    until: { type: 'string' },
    day: { type: 'string' },
    lateness: { type: 'string', default: '600' },
    'offset-file': { type: 'string' },
    'idle-exit': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (values.help) {
  process.stderr.write(USAGE)
  process.exit(0)
}

const usageError = (message: string): never => {
  process.stderr.write(`${message}\n\n${USAGE}`)
  process.exit(2)
}

const wholeNumber = (name: string, text: string | undefined, min: number) => {
  if (text === undefined) return undefined
  const value = Number(text)
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) {
    return usageError(`--${name} must be a whole number of at least ${min}`)
  }
  return value
}

// Only the variables this command uses: a data platform host has no JWT secret, and needs none.
let config: ReturnType<typeof loadConfig>
try {
  const { RABBITMQ_URL, BUSINESS_TIMEZONE } = process.env
  const limits = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => key.startsWith('DATA_PLATFORM_')),
  )
  config = loadConfig({ RABBITMQ_URL, BUSINESS_TIMEZONE, ...limits })
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  process.stderr.write(`${error.message}\n`)
  process.exit(2)
}

const url = values.url ?? config.rabbitmqUrl
const prefetch = wholeNumber('prefetch', values.prefetch, 1) ?? 100
const max = wholeNumber('max', values.max, 1) ?? Number.POSITIVE_INFINITY
const log = createLogger('info', { script: 'consume-data-platform' }, (line) => process.stderr.write(line))
const topology = eventTopology(values.suffix, config.dataPlatform)
const replay =
  values.from !== undefined ||
  values.day !== undefined ||
  values.until !== undefined ||
  values['offset-file'] !== undefined ||
  values['idle-exit'] !== undefined

let printed = 0
let finishing = false
let current: Channel | undefined
let broker: BrokerConnection | undefined
let beforeExit: () => Promise<void> = async () => undefined

/** Resolves once the line is handed to the OS, so that the ack never runs ahead of the output. */
const print = (line: string) =>
  new Promise<void>((resolve, reject) => {
    process.stdout.write(`${line}\n`, (error) => (error ? reject(error) : resolve()))
  })

async function finish(reason: string, exitCode = 0) {
  if (finishing) return
  finishing = true
  log.info('stopping', { reason, printed })
  // Closing the channel first waits for the broker to take every ack sent on it; closing only the
  // connection could overtake the last acks and have those messages delivered again.
  await current?.close().catch(() => undefined)
  await broker?.close()
  try {
    await beforeExit()
  } catch (error) {
    log.error('cannot write the offset file', { error })
    exitCode = 1
  }
  process.exit(exitCode)
}

process.once('SIGINT', () => void finish('SIGINT'))
process.once('SIGTERM', () => void finish('SIGTERM'))

if (replay) await replayStream()
else await consumeQueue()

/** Live mode: the data.platform queue, each message acknowledged (and so removed) after its line. */
async function consumeQueue() {
  const queue = topology.queues.dataPlatform
  broker = await connectBroker({
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
}

const describe = (point: StreamStart | StreamEnd) =>
  point.kind === 'time' ? point.at.toISOString() : point.kind === 'offset' ? point.offset : point.kind

/** Replay mode: the stream, from a point, each line carrying its offset. */
async function replayStream() {
  let start: StreamStart = { kind: 'next' }
  let until: StreamEnd | undefined
  let from: Date | undefined
  try {
    if (values.day !== undefined) {
      if (values.from !== undefined || values.until !== undefined)
        usageError('--day replaces --from and --until')
      const window = businessDayWindow(values.day, config.businessTimeZone)
      start = { kind: 'time', at: window.from }
      until = { kind: 'time', at: window.until }
    } else {
      if (values.from === undefined)
        usageError('a replay needs --from (or --day): where its first run starts')
      start = parseStart(values.from ?? 'next')
      until = values.until === undefined ? undefined : parseEnd(values.until)
    }
  } catch (error) {
    if (error instanceof ReplayArgumentError) usageError(error.message)
    throw error
  }
  if (start.kind === 'time') from = start.at
  const latenessMs = (wholeNumber('lateness', values.lateness, 0) ?? 600) * 1000
  const idleExitMs = (wholeNumber('idle-exit', values['idle-exit'], 1) ?? 0) * 1000
  const decide = replayFilter({ from, until, latenessMs })
  const stream = topology.streams.dataPlatform

  const offsetFile =
    values['offset-file'] === undefined ? undefined : createOffsetFile(values['offset-file'], stream)
  let next: number | undefined
  try {
    next = await offsetFile?.read()
  } catch (error) {
    if (error instanceof ReplayArgumentError) usageError(error.message)
    throw error
  }
  if (next !== undefined)
    log.info('resuming from the offset file', { offset: next, file: values['offset-file'] })
  beforeExit = async () => {
    await offsetFile?.flush()
  }

  let idleTimer: NodeJS.Timeout | undefined
  const stillActive = () => {
    if (idleExitMs === 0) return
    clearTimeout(idleTimer)
    idleTimer = setTimeout(
      () => void finish(`no message for ${idleExitMs / 1000} s (--idle-exit)`),
      idleExitMs,
    )
  }

  /** Handles one message, strictly after the one before it (the chain below). */
  const handle = async (channel: Channel, message: ConsumeMessage, expectedFirst: number | undefined) => {
    if (finishing) return
    stillActive()
    const acknowledge = () => {
      // A stream keeps its messages: an ack only lets the broker send more. The channel may be gone
      // after a reconnect, which is fine: the new one starts after the last offset handled.
      try {
        channel.ack(message)
      } catch {
        // nothing to give credit to any more
      }
    }
    const offset: unknown = message.properties.headers?.['x-stream-offset']
    if (typeof offset !== 'number') {
      log.error('a stream message without x-stream-offset; skipped', {
        messageId: message.properties.messageId,
      })
      acknowledge()
      return
    }
    // Already handled: a reconnected read starts again from the last position, which it may repeat.
    if (next !== undefined && offset < next) {
      acknowledge()
      return
    }
    if (expectedFirst !== undefined && offset > expectedFirst) {
      log.warn('offsets before this one are no longer in the stream (retention); they cannot be replayed', {
        requested: expectedFirst,
        firstAvailable: offset,
      })
    }

    let body: unknown
    let occurredAt: Date | undefined
    try {
      body = JSON.parse(message.content.toString('utf8'))
      const at = (body as { occurredAt?: unknown } | null)?.occurredAt
      occurredAt = typeof at === 'string' && !Number.isNaN(Date.parse(at)) ? new Date(at) : undefined
    } catch (error) {
      log.error('not JSON; skipped (a stream cannot dead-letter)', { offset, error })
      body = undefined
    }
    const decision = body === undefined ? 'skip' : decide(offset, occurredAt)
    if (decision === 'stop') {
      await finish(until?.kind === 'offset' ? '--until offset reached' : 'past --until (and --lateness)')
      return
    }
    if (decision === 'print') {
      await print(JSON.stringify({ offset, event: body }))
      printed++
      if (printed % 1000 === 0) log.info('progress', { printed, offset })
    }
    acknowledge()
    next = offset + 1
    offsetFile?.save(next)
    if (offsetFile?.failed) await finish('the offset file cannot be written', 1)
    else if (printed >= max) await finish('--max reached')
  }

  broker = await connectBroker({
    url,
    name: 'data-platform-replay',
    logger: log,
    setup: async (connection) => {
      await declareTopology(connection, topology, log)
      const channel: Channel = await connection.createChannel()
      current = channel
      channel.on('error', (error: Error) => log.warn('channel error', { error }))
      // A stream consumer needs a prefetch (basic.qos) and manual acks: the acks are its flow control.
      await channel.prefetch(prefetch)
      const position: StreamStart = next === undefined ? start : { kind: 'offset', offset: next }
      let expectedFirst = position.kind === 'offset' ? position.offset : undefined
      let chain = Promise.resolve()
      await channel.consume(
        stream,
        (message) => {
          if (message === null) {
            log.warn('the broker cancelled the stream consumer; reconnecting', { stream })
            broker?.reset()
            return
          }
          const first = expectedFirst
          expectedFirst = undefined
          chain = chain
            .then(() => handle(channel, message, first))
            .catch(async (error: unknown) => {
              log.error('cannot write the output', { error })
              await finish('output failed', 1)
            })
        },
        { noAck: false, arguments: { 'x-stream-offset': streamOffsetArgument(position) } },
      )
      stillActive()
      log.info('replaying', {
        stream,
        url: redactUrl(url),
        from: describe(position),
        until: until === undefined ? null : describe(until),
        prefetch,
      })
    },
  })
}
