import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import type { OutboxNotifier } from './outbox'

export const OUTBOX_QUEUE = 'outbox-relay'

/** BullMQ keys live under the same namespace as the process's other Redis keys (see redisKeyPrefix). */
export const bullPrefix = (keyPrefix: string) => `${keyPrefix}bull`

/**
 * Every publish job, from `notify` or from the relay's sweeper. Failed jobs are kept for the operator (the
 * sweeper retries them later); completed ones are trimmed, since a completed job means a published row.
 * Backoff between attempts: 0.2, 0.4, 0.8 … 51 s, about 100 s from the first attempt to the last.
 */
export const OUTBOX_JOB_OPTIONS = {
  attempts: 10,
  backoff: { type: 'exponential', delay: 200 },
  removeOnComplete: 1_000,
  removeOnFail: false,
} as const

/**
 * The producer side of the relay queue: one job per committed event, job id = event id, so a second
 * notify for the same event is a no-op in BullMQ. The connection has no offline queue, so while Redis is
 * down `notify` fails at once and the caller moves on (the sweeper publishes those rows later).
 */
export function createOutboxQueue(
  redisUrl: string,
  keyPrefix: string,
): OutboxNotifier & { close(): Promise<void> } {
  const connection = new Redis(redisUrl, {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    connectTimeout: 2_000,
  })
  connection.on('error', () => undefined)
  const queue = new Queue(OUTBOX_QUEUE, { connection, prefix: bullPrefix(keyPrefix) })
  queue.on('error', () => undefined)
  return {
    async notify(eventIds) {
      if (eventIds.length === 0) return
      await queue.addBulk(
        eventIds.map((eventId) => ({
          name: 'publish',
          data: { eventId },
          opts: { ...OUTBOX_JOB_OPTIONS, jobId: eventId },
        })),
      )
    },
    async close() {
      await queue.close()
      connection.disconnect()
    },
  }
}
