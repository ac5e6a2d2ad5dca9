import { createInvalidationBus } from '../cache/invalidation-bus'
import { type Config, redactUrl } from '../config'
import { createDatabase } from '../db/client'
import { migrateDatabase } from '../db/migrate'
import type { Deps } from '../deps'
import { createOutboxWaker, outboxWakeChannel } from '../events/outbox'
import { createLogger } from '../logger'
import { createMetrics } from '../metrics'
import { connectRedis, createRedis } from '../redis/client'

/** A start-up failure the operator can act on: printed as its message alone, never as a stack trace. */
export class StartupError extends Error {
  override name = 'StartupError'
}

const HOW_TO_START =
  'Start the local services with `bash scripts/dev-services.sh` (Debian), or with Docker as the README says.'

export function unreachable(service: string, where: string, variable: string, error: unknown): StartupError {
  const reason = error instanceof Error ? ((error as { code?: string }).code ?? error.message) : String(error)
  return new StartupError(
    `Cannot reach ${service} at ${where} (${reason}).\n` +
      `  Set ${variable} if it runs elsewhere. ${HOW_TO_START}`,
  )
}

const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ER_ACCESS_DENIED_ERROR',
])

/** Creates the database if missing and applies pending migrations; an unreachable MySQL is a StartupError. */
export async function applyMigrations(config: Config): Promise<void> {
  try {
    await migrateDatabase(config.databaseUrl)
  } catch (error) {
    if (CONNECTION_ERRORS.has(String((error as { code?: unknown }).code))) {
      throw unreachable('MySQL', redactUrl(config.databaseUrl), 'DATABASE_URL', error)
    }
    throw error
  }
}

/** Redis keys are namespaced by the database they cache: `commerce:` for the default DATABASE_URL. */
export const redisKeyPrefix = (databaseUrl: string) =>
  `${decodeURIComponent(new URL(databaseUrl).pathname.slice(1))}:`

export type RuntimeDeps = Deps & { close(): Promise<void> }

/** Builds every dependency once for this process and checks that MySQL and Redis answer. */
export async function buildDeps(config: Config, service: string): Promise<RuntimeDeps> {
  const logger = createLogger(config.logLevel, { service })
  const metrics = createMetrics({ service })
  const database = createDatabase({
    url: config.databaseUrl,
    replicaUrl: config.databaseReplicaUrl,
    connectionLimit: config.databasePoolSize,
    replicaConnectionLimit: config.databaseReplicaPoolSize,
  })
  const keyPrefix = redisKeyPrefix(config.databaseUrl)
  const redis = createRedis(config.redisUrl, keyPrefix)
  // Both at once: each is a few round trips on its own connection, and start-up waits for the slower one
  // instead of the sum. MySQL is reported first when both are down, as it was when they were checked in turn.
  const [mysqlUp, redisUp] = await Promise.allSettled([database.ping(), connectRedis(redis)])
  if (mysqlUp.status === 'rejected' || redisUp.status === 'rejected') {
    redis.disconnect()
    await database.close().catch(() => undefined)
    throw mysqlUp.status === 'rejected'
      ? unreachable('MySQL', redactUrl(config.databaseUrl), 'DATABASE_URL', mysqlUp.reason)
      : unreachable(
          'Redis',
          redactUrl(config.redisUrl),
          'REDIS_URL',
          (redisUp as PromiseRejectedResult).reason,
        )
  }
  const bus = createInvalidationBus(redis, config.redisUrl, `${keyPrefix}cache-invalidation`, logger)
  // Components built on first use (once), closed in reverse order of building.
  const built = new Map<string, unknown>()
  const closers: Array<() => unknown> = []
  return {
    config,
    logger,
    metrics,
    db: database.db,
    dbRead: database.dbRead,
    redis,
    bus,
    outbox: createOutboxWaker(redis, outboxWakeChannel(keyPrefix)),
    lifecycle: { draining: false },
    ping: {
      mysql: () => database.ping(),
      redis: async () => {
        await redis.ping()
      },
    },
    once<T>(name: string, build: () => T, close?: (value: T) => unknown): T {
      if (built.has(name)) return built.get(name) as T
      const value = build()
      built.set(name, value)
      if (close) closers.unshift(() => close(value))
      return value
    },
    async close() {
      for (const close of closers) await Promise.resolve(close()).catch(() => undefined)
      await bus.close()
      await Promise.allSettled([database.close(), redis.quit()])
      await logger.flush()
    },
  }
}
