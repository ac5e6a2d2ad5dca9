import { hostname } from 'node:os'
import { Redis as IORedis, type RedisOptions } from 'ioredis'
import { REDIS_SCRIPTS, type RedisScripts } from './scripts'

/** The app's Redis client: ioredis with the app's scripts as methods (shared/redis/scripts.ts). */
export type Redis = IORedis & RedisScripts

/**
 * The name a connection gives itself (CLIENT SETNAME), so that Redis's CLIENT LIST tells whose and what
 * each connection is: `<purpose>:<host>:<pid>`, e.g. `commerce:main:order-create-7d9f-x2k4:1`. In a pod the
 * host name is the pod's name; on one machine the pid tells the processes apart.
 */
export const redisConnectionName = (purpose: string) => `${purpose}:${hostname()}:${process.pid}`

/**
 * An ioredis client with the app's scripts, on options of the caller's own (createRedis's for the app; a
 * test may want others). ioredis defines a method per script at construction (its `scripts` option runs
 * defineCommand for each); its typings cannot know their names.
 */
export function redisWithScripts(url: string | undefined, options: RedisOptions): Redis {
  const withScripts = { ...options, scripts: REDIS_SCRIPTS }
  return (url === undefined ? new IORedis(withScripts) : new IORedis(url, withScripts)) as Redis
}

/**
 * A Redis client for cache, locks and counters. It fails fast instead of queueing while Redis is away
 * (no offline queue, one retry, short timeouts), so callers can fall back to MySQL at once; it keeps
 * reconnecting in the background and serves again as soon as Redis is back.
 *
 * `keyPrefix` namespaces every key (scripts' KEYS included), so that two databases served by one Redis,
 * such as the development and the test database, never read each other's cache, locks or counters.
 */
export function createRedis(url: string, keyPrefix = ''): Redis {
  const redis = redisWithScripts(url, {
    keyPrefix,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: 1_000,
    retryStrategy: (times) => Math.min(50 * times, 1_000),
    lazyConnect: true,
    // Commands issued in the same turn of the event loop go out in one write (one system call): a
    // request's GET and PTTL, and the commands of concurrent requests, share it.
    enableAutoPipelining: true,
    connectionName: redisConnectionName(`${keyPrefix}main`),
  })
  // Without a listener ioredis logs every failed reconnect to stderr; readiness reports the state instead.
  redis.on('error', () => undefined)
  return redis
}

/** Resolves once connected, or rejects with the connection error, so start-up can say what is wrong. */
export async function connectRedis(redis: Redis): Promise<void> {
  if (redis.status === 'ready') return
  await redis.connect()
}

/** Whether a Redis on 127.0.0.1:`port` answers PING now (one try, no retries): for scripts waiting on one they started. */
export async function redisAnswers(port: number): Promise<boolean> {
  const client = new IORedis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  client.on('error', () => undefined)
  try {
    await client.connect()
    return (await client.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    client.disconnect()
  }
}
