import { type Job, Queue, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import type { Deps } from '../deps'
import { purgeExpiredIdempotencyKeys } from '../idempotency/idempotency'
import type { Logger } from '../logger'
import { redisConnectionName } from '../redis/client'
import { redisKeyPrefix } from '../runtime/deps'
import { purgeProcessedEvents } from '../stats/sales'
import { outboxWakeChannel } from './outbox'
import { bullPrefix, OUTBOX_QUEUE, retryJobs } from './outbox-queue'
import {
  countOutboxAttempt,
  countUnpublishedOutboxEvents,
  type DrainedRow,
  deletePublishedOutboxEvents,
  drainOutbox,
  findOutboxEvent,
  findRetriedOutboxEvents,
  markOutboxEventPublished,
} from './outbox-store'
import {
  BrokerUnavailableError,
  createEventPublisher,
  type EventPublisher,
  UnroutableError,
} from './publisher'
import { type EventTopology, eventTopology } from './topology'

export type RelayDeps = Pick<Deps, 'config' | 'db' | 'logger' | 'metrics'>

export type RelayOptions = {
  /** RabbitMQ names; tests pass a suffixed topology of their own. */
  topology?: EventTopology
  /** Retry jobs published at once by this process. */
  concurrency?: number
  /** How often the sweeper drains (in case a wake-up was lost) and looks for retries no job holds. */
  sweepIntervalMs?: number
  /** Retried rows younger than this are left to their own job. */
  sweepAfterMs?: number
  /** A job that used up its attempts is retried by the sweeper after sitting this long in `failed`. */
  failedRetryAfterMs?: number
  /** Published rows are deleted after this long. */
  retentionMs?: number
  maintenanceIntervalMs?: number
}

export const RELAY_DEFAULTS = {
  concurrency: 32,
  sweepIntervalMs: 1_500,
  sweepAfterMs: 1_000,
  failedRetryAfterMs: 60_000,
  retentionMs: 7 * 24 * 3600 * 1000,
  maintenanceIntervalMs: 10 * 60 * 1000,
} as const

const SWEEP_BATCH = 500
/** Rows published per drain transaction: their confirms are awaited together. */
const DRAIN_BATCH = 200
/** While RabbitMQ is away, the worker holds its jobs back this long at a time instead of failing them. */
const BROKER_WAIT_MS = 1_000

type PublishJob = Job<{ eventId?: unknown }>

/** Runs `task` now and then `intervalMs` after each run ends (never two at once); logs, never throws. */
function repeat(name: string, intervalMs: number, task: () => Promise<void>, logger: Logger) {
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> | undefined
  let stopped = false
  const tick = () => {
    running = task()
      .catch((error: unknown) => logger.warn(`${name} failed; will try again`, { error }))
      .finally(() => {
        running = undefined
        if (!stopped) timer = setTimeout(tick, intervalMs)
      })
  }
  tick()
  return {
    async stop() {
      stopped = true
      clearTimeout(timer)
      await running
    },
  }
}

/**
 * The outbox relay. Producers wake it after each commit (one Redis PUBLISH per process and event-loop
 * turn, see createOutboxWaker); it then drains the outbox: rows never tried are taken in batches
 * (locked, SKIP LOCKED, so several relays share the work), published with publisher confirms, and marked
 * published in the same transaction. A row whose publish fails (no queue bound, a nack, no confirm) is
 * counted as tried and handed to BullMQ, which retries it with backoff; a sweeper drains now and then in
 * case a wake-up was lost, re-enqueues tried rows that no job holds, and a maintenance loop deletes old
 * published rows and expired idempotency keys.
 *
 * At least once, never lost: a row is marked published only after the broker's confirm, so a crash in
 * between publishes it again (consumers dedupe by eventId). A RabbitMQ outage does not use up attempts:
 * the drain stops while the broker is away and starts again on reconnect; retry jobs wait (BullMQ rate
 * limit) until the connection is back, then delayed retries are promoted at once.
 */
export function createOutboxRelay(deps: RelayDeps, options: RelayOptions = {}) {
  const { config, db, logger, metrics } = deps
  const settings = { ...RELAY_DEFAULTS, ...options }
  const topology = options.topology ?? eventTopology('', config.dataPlatform)
  const prefix = bullPrefix(redisKeyPrefix(config.databaseUrl))
  const log = logger.child({ worker: 'outbox-relay' })

  // BullMQ's worker blocks on Redis and must wait through outages (maxRetriesPerRequest null); the
  // sweeper's connection fails fast instead, so that a sweep during an outage ends instead of hanging.
  const named = (purpose: string) =>
    redisConnectionName(`${redisKeyPrefix(config.databaseUrl)}relay-${purpose}`)
  const workerConnection = new Redis(config.redisUrl, {
    maxRetriesPerRequest: null,
    connectionName: named('worker'),
  })
  const queueConnection = new Redis(config.redisUrl, {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    connectTimeout: 2_000,
    connectionName: named('queue'),
  })
  // Wake-ups arrive on a connection of their own (a subscribed connection can do nothing else).
  const wakeConnection = new Redis(config.redisUrl, {
    maxRetriesPerRequest: null,
    lazyConnect: true,
    connectionName: named('wake'),
  })
  workerConnection.on('error', () => undefined)
  queueConnection.on('error', () => undefined)
  wakeConnection.on('error', () => undefined)
  const queue = new Queue(OUTBOX_QUEUE, { connection: queueConnection, prefix })
  queue.on('error', () => undefined)

  let publisher: EventPublisher | undefined
  let worker: Worker | undefined
  let loops: Array<{ stop(): Promise<void> }> = []

  const holdBack = async (): Promise<never> => {
    await queue.rateLimit(BROKER_WAIT_MS)
    throw Worker.RateLimitError()
  }

  const observePublished = (row: Pick<DrainedRow, 'type' | 'createdAt'>, confirmedAt: Date) => {
    metrics.eventsPublished.inc({ type: row.type, outcome: 'published' })
    metrics.eventPublishLatency.observe(
      { type: row.type },
      (confirmedAt.getTime() - row.createdAt.getTime()) / 1000,
    )
  }

  /** Publishes a batch with its confirms awaited together; a broker gone away leaves rows untried. */
  const publishBatch = async (rows: DrainedRow[]) => {
    const sent = publisher
    if (sent === undefined) return { published: [], failed: [] }
    const results = await Promise.allSettled(
      rows.map((row) =>
        sent.publish({
          eventId: row.eventId,
          type: row.type,
          body: row.body,
          occurredAt: row.createdAt,
        }),
      ),
    )
    const confirmedAt = new Date()
    const published: DrainedRow[] = []
    const failed: DrainedRow[] = []
    results.forEach((result, i) => {
      const row = rows[i] as DrainedRow
      if (result.status === 'fulfilled') {
        published.push(row)
        observePublished(row, confirmedAt)
      } else if (!(result.reason instanceof BrokerUnavailableError)) {
        failed.push(row)
        metrics.eventsPublished.inc({
          type: row.type,
          outcome: result.reason instanceof UnroutableError ? 'unroutable' : 'failed',
        })
        log.warn('event publish failed; retrying with backoff', {
          eventId: row.eventId,
          error: result.reason,
        })
      }
    })
    return { published, failed }
  }

  let draining: Promise<void> | undefined
  let drainAgain = false
  /** Drains until the outbox has no untried row; a wake-up during a drain makes it look once more. */
  const drain = (): Promise<void> => {
    if (draining !== undefined) {
      drainAgain = true
      return draining
    }
    const run = async () => {
      do {
        drainAgain = false
        for (;;) {
          if (publisher?.connected !== true) return
          const { taken, published, failed } = await drainOutbox(db, DRAIN_BATCH, publishBatch)
          if (failed.length > 0) {
            await queue
              .addBulk(retryJobs(failed.map((row) => row.eventId)))
              .catch((error: unknown) =>
                log.warn('retry jobs not added; the sweeper adds them', { error, events: failed.length }),
              )
          }
          if (taken < DRAIN_BATCH || published.length + failed.length < taken) break
        }
      } while (drainAgain)
    }
    // `finally` runs after the assignment even when `run` returns at once.
    draining = run()
      .catch((error: unknown) => log.warn('outbox drain failed; the sweeper drains again', { error }))
      .finally(() => {
        draining = undefined
      })
    return draining
  }

  const publishJob = async (job: PublishJob) => {
    const eventId = job.data.eventId
    if (typeof eventId !== 'string') throw new Error(`job ${job.id} has no eventId`)
    if (publisher?.connected !== true) return holdBack()
    const row = await findOutboxEvent(db, eventId)
    // Notify runs after commit, so a missing row is a caller's bug (notify before commit, or for a rolled
    // back transaction): the job fails after its attempts and stays in `failed` for someone to look at.
    if (row === undefined) throw new Error(`outbox row ${eventId} not found`)
    if (row.publishedAt !== null) {
      metrics.eventsPublished.inc({ type: row.type, outcome: 'already_published' })
      return
    }
    try {
      await publisher.publish({
        eventId,
        type: row.type,
        body: row.body,
        occurredAt: row.createdAt,
      })
    } catch (error) {
      if (error instanceof BrokerUnavailableError) return holdBack()
      metrics.eventsPublished.inc({
        type: row.type,
        outcome: error instanceof UnroutableError ? 'unroutable' : 'failed',
      })
      await countOutboxAttempt(db, eventId).catch(() => undefined)
      throw error
    }
    const confirmedAt = new Date()
    await markOutboxEventPublished(db, eventId, confirmedAt)
    observePublished(row, confirmedAt)
  }

  let sweepCursor = 0
  const sweep = async () => {
    await drain()
    const rows = await findRetriedOutboxEvents(db, {
      olderThan: new Date(Date.now() - settings.sweepAfterMs),
      afterId: sweepCursor,
      limit: SWEEP_BATCH,
    })
    sweepCursor = rows.length === SWEEP_BATCH ? (rows.at(-1)?.id ?? 0) : 0
    const states = await Promise.all(rows.map((row) => queue.getJobState(row.eventId)))
    const missing: string[] = []
    const finished: Array<{ eventId: string; state: 'failed' | 'completed' }> = []
    rows.forEach((row, i) => {
      const state = states[i]
      if (state === 'unknown') missing.push(row.eventId)
      else if (state === 'failed' || state === 'completed') finished.push({ eventId: row.eventId, state })
    })
    if (missing.length > 0) {
      // Tried but held by no job: Redis was down when the drain handed it over, or published_at was reset
      // by an operator to replay the event.
      await queue.addBulk(retryJobs(missing))
      metrics.outboxRequeued.inc({ reason: 'not_enqueued' }, missing.length)
    }
    for (const { eventId, state } of finished) {
      // A job id that exists blocks a new add, so a finished job is retried in place. `completed` with
      // the row unpublished means someone reset published_at to replay the event.
      const job = await queue.getJob(eventId)
      if (job === undefined) continue
      if (state === 'failed' && Date.now() - (job.finishedOn ?? 0) < settings.failedRetryAfterMs) continue
      try {
        await job.retry(state, { resetAttemptsMade: true, resetAttemptsStarted: true })
        metrics.outboxRequeued.inc({ reason: state })
      } catch (error) {
        log.debug('sweeper could not retry job; next sweep will look again', { eventId, error })
      }
    }
    metrics.outboxUnpublished.set(await countUnpublishedOutboxEvents(db))
  }

  const maintain = async () => {
    const deleted = await deletePublishedOutboxEvents(db, new Date(Date.now() - settings.retentionMs))
    const purged = await purgeExpiredIdempotencyKeys(db)
    const forgotten = await purgeProcessedEvents(db)
    if (deleted > 0 || purged > 0 || forgotten > 0) {
      log.info('outbox maintenance', {
        deletedPublishedEvents: deleted,
        purgedIdempotencyKeys: purged,
        forgottenProcessedEvents: forgotten,
      })
    }
  }

  return {
    async start() {
      publisher = await createEventPublisher({
        url: config.rabbitmqUrl,
        topology,
        logger: log,
        name: 'outbox-relay',
        // Retries that backed off while the broker was away need not wait out their delay.
        onConnect: () => {
          queue.promoteJobs().catch(() => undefined)
          void drain()
        },
      })
      wakeConnection.on('message', () => void drain())
      // After a reconnect, wake-ups sent meanwhile are lost: drain once for them.
      wakeConnection.on('ready', () => void drain())
      // Not awaited: with Redis away it would wait for it; the sweeper drains meanwhile.
      wakeConnection
        .subscribe(outboxWakeChannel(redisKeyPrefix(config.databaseUrl)))
        .catch((error: unknown) =>
          log.warn('not subscribed to outbox wake-ups; the sweeper drains', { error }),
        )
      const running = new Worker(OUTBOX_QUEUE, publishJob, {
        connection: workerConnection,
        // BullMQ opens one more connection (for its blocking fetch) and names it after the queue and this:
        // `<prefix>bull:<queue in base64>:w:relay-blocking:<host>:<pid>`.
        name: redisConnectionName('relay-blocking'),
        prefix,
        concurrency: settings.concurrency,
        // A job whose worker lost Redis (or died) mid-publish is taken back within about 10 s instead of
        // BullMQ's default 30 + 30 s (found by the fault suite): it is published again, and consumers
        // dedupe. The lock is renewed while a publish runs, so a slow confirm is not taken for a stall.
        lockDuration: 5_000,
        stalledInterval: 5_000,
      })
      running.on('error', (error) => log.warn('relay worker error', { error }))
      running.on('failed', (job, error) => {
        const attempts = job?.opts.attempts ?? 1
        const gaveUp = (job?.attemptsMade ?? 0) >= attempts
        const fields = { eventId: job?.id, attemptsMade: job?.attemptsMade, error }
        if (gaveUp) log.error('event not published after every attempt; the sweeper retries it later', fields)
        else log.warn('event publish failed; retrying with backoff', fields)
      })
      worker = running
      loops = [
        repeat('outbox sweep', settings.sweepIntervalMs, sweep, log),
        repeat('outbox maintenance', settings.maintenanceIntervalMs, maintain, log),
      ]
      log.info('outbox relay started', { exchange: topology.exchange, queue: OUTBOX_QUEUE, prefix })
    },

    async stop() {
      await Promise.all(loops.map((loop) => loop.stop()))
      loops = []
      wakeConnection.disconnect()
      await draining
      // Forced: an idle worker's close can wait on a blocking Redis call that a reconnect left hanging.
      // A retry in flight is left to BullMQ's stalled-job check: it is published again (consumers dedupe).
      await worker?.close(true)
      await queue.close()
      await publisher?.close()
      workerConnection.disconnect()
      queueConnection.disconnect()
    },
  }
}

export type OutboxRelay = ReturnType<typeof createOutboxRelay>
