import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import type { Logger } from '../logger'
import { redisConnectionName } from '../redis/client'

/** How long `publish` waits for its own message to come back before it stops waiting. */
const ROUND_TRIP_TIMEOUT_MS = 250

export type InvalidationHandlers = {
  /** `key` of this cache changed: drop it from process memory. */
  onKey(key: string): void
  /** Messages may have been missed (the subscription was down): drop everything. */
  onReset(): void
}

export type InvalidationBus = {
  /**
   * Tells every subscribed process, this one included, that `key` of `cache` changed. Resolves once the
   * message has come back to this process's own subscription: Redis hands a message to its subscribers
   * in one go, so by then every other process has it on its socket too, before any client could act on
   * this process's answer. Gives up waiting after 250 ms (the bus is down: see `onReset`).
   */
  publish(cache: string, key: string): Promise<void>
  subscribe(cache: string, handlers: InvalidationHandlers): void
  close(): Promise<void>
}

/**
 * Cross-process invalidation of in-memory caches over Redis pub/sub, on a channel per database
 * (`<prefix>cache-invalidation`). The subscriber connection is opened on the first `subscribe`, so a
 * process that keeps nothing in memory holds no extra connection. ioredis resubscribes after a reconnect;
 * every reconnect after the first is reported to the handlers as a reset, since messages published while
 * the connection was down are lost.
 */
export function createInvalidationBus(
  publisher: Pick<Redis, 'publish'>,
  redisUrl: string,
  channel: string,
  logger: Logger,
): InvalidationBus {
  const handlers = new Map<string, InvalidationHandlers[]>()
  const waiting = new Map<string, () => void>()
  let subscriber: Redis | undefined
  let subscribed = false

  const open = () => {
    const connection = new Redis(redisUrl, {
      lazyConnect: true,
      maxRetriesPerRequest: null,
      connectionName: redisConnectionName(channel),
    })
    connection.on('error', () => undefined)
    let readyBefore = false
    connection.on('ready', () => {
      if (readyBefore) {
        logger.info('cache invalidation bus reconnected; in-memory caches cleared')
        for (const list of handlers.values()) for (const h of list) h.onReset()
      }
      readyBefore = true
    })
    connection.on('message', (_channel: string, message: string) => {
      const [cache, key, id] = message.split('\t')
      if (cache === undefined || key === undefined) return
      for (const h of handlers.get(cache) ?? []) h.onKey(key)
      if (id !== undefined) waiting.get(id)?.()
    })
    connection.subscribe(channel).then(
      () => {
        subscribed = true
      },
      (error: unknown) => logger.warn('cache invalidation bus could not subscribe', { error }),
    )
    return connection
  }

  return {
    async publish(cache, key) {
      const id = randomUUID()
      const seen = subscribed
        ? new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, ROUND_TRIP_TIMEOUT_MS)
            waiting.set(id, () => {
              clearTimeout(timer)
              resolve()
            })
          })
        : undefined
      try {
        await publisher.publish(channel, `${cache}\t${key}\t${id}`)
        await seen
      } finally {
        waiting.delete(id)
      }
    },
    subscribe(cache, h) {
      handlers.set(cache, [...(handlers.get(cache) ?? []), h])
      subscriber ??= open()
    },
    async close() {
      subscriber?.disconnect()
      subscriber = undefined
    },
  }
}
