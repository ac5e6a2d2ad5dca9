import amqp, { type ChannelModel } from 'amqplib'
import type { Logger } from '../logger'

export type BrokerConnection = {
  /** True from a successful setup until the next disconnect. */
  readonly connected: boolean
  /** Drops the current connection; recovery opens a new one and runs setup again. */
  reset(): void
  close(): Promise<void>
}

/** Heartbeats notice a dead peer (a cut network, not a closed socket) within about 2 × 5 s. */
const HEARTBEAT_SECONDS = 5

/**
 * A RabbitMQ connection that reconnects by itself for as long as the process runs, through amqplib's
 * opt-in recovery: `setup` runs after every (re)connect and re-creates the topology, channels and
 * consumers, which do not survive a connection. `connectBroker` returns at once, even while the broker
 * is down, so a worker starts and catches up when the broker comes back.
 */
export async function connectBroker(options: {
  url: string
  /** Shown in the broker's connection list. */
  name: string
  logger: Logger
  setup: (connection: ChannelModel) => Promise<void>
  onConnect?: () => void
  onDisconnect?: () => void
}): Promise<BrokerConnection> {
  const { logger } = options
  const url = new URL(options.url)
  if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(HEARTBEAT_SECONDS))
  let current: ChannelModel | undefined
  let connected = false
  let failures = 0

  const recovering = await amqp.connect(url.toString(), {
    timeout: 5_000,
    clientProperties: { connection_name: options.name },
    recovery: {
      initialDelay: 100,
      maxDelay: 2_000,
      maxRetries: Number.POSITIVE_INFINITY,
      waitForConnect: false,
      setup: async (connection: ChannelModel) => {
        current = connection
        // amqplib's recovery listens for a connection's errors only once setup is done, so a connection
        // lost during setup (declaring the topology can take a while) would be thrown as uncaught.
        // Here it only fails the setup, and recovery connects again.
        let settingUp = true
        connection.on('error', (error: Error) => {
          if (settingUp)
            logger.warn('RabbitMQ connection lost during setup', { connection: options.name, error })
        })
        try {
          await options.setup(connection)
        } finally {
          settingUp = false
        }
      },
    },
  })
  recovering.on('connect', () => {
    connected = true
    failures = 0
    logger.info('connected to RabbitMQ', { connection: options.name })
    options.onConnect?.()
  })
  recovering.on('disconnect', (error: Error) => {
    connected = false
    logger.warn('disconnected from RabbitMQ; reconnecting', { connection: options.name, error })
    options.onDisconnect?.()
  })
  // The first failed attempt of an outage is a warning; the retries after it (every 2 s) stay at debug.
  recovering.on('connect-failed', (error: Error) => {
    failures++
    const log = failures === 1 ? logger.warn : logger.debug
    log('cannot reach RabbitMQ; retrying in the background', {
      connection: options.name,
      attempts: failures,
      error,
    })
  })
  recovering.on('error', (error: Error) => {
    logger.warn('RabbitMQ connection error', { connection: options.name, error })
  })
  recovering.on('handler-error', (error: Error, event: string) => {
    logger.error('RabbitMQ event handler failed', { connection: options.name, event, error })
  })

  return {
    get connected() {
      return connected
    },
    reset() {
      current?.close().catch(() => undefined)
    },
    async close() {
      connected = false
      await recovering.close()
    },
  }
}
