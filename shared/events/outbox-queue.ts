/** The BullMQ queue of publish retries: one job per event whose first publish failed. */
export const OUTBOX_QUEUE = 'outbox-relay'

/** BullMQ keys live under the same namespace as the process's other Redis keys (see redisKeyPrefix). */
export const bullPrefix = (keyPrefix: string) => `${keyPrefix}bull`

/**
 * Every retry job, from a failed drain or from the relay's sweeper. Failed jobs are kept for the operator
 * (the sweeper retries them later); completed ones are trimmed, since a completed job means a published
 * row. Backoff between attempts: 0.2, 0.4, 0.8 … 51 s, about 100 s from the first attempt to the last.
 */
export const OUTBOX_JOB_OPTIONS = {
  attempts: 10,
  backoff: { type: 'exponential', delay: 200 },
  removeOnComplete: 1_000,
  removeOnFail: false,
} as const

/** One retry job per event, job id = event id, so a second add for the same event is a no-op. */
export const retryJobs = (eventIds: string[]) =>
  eventIds.map((eventId) => ({
    name: 'publish',
    data: { eventId },
    opts: { ...OUTBOX_JOB_OPTIONS, jobId: eventId },
  }))
