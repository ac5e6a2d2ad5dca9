import { EventEmitter } from 'node:events'
import type { Redis } from 'ioredis'
import type { Db } from '../db/client'

/**
 * Counts connections taken from a Db's own mysql2 pool (every query takes one): a count of zero over a
 * stretch of requests proves they never reached MySQL. It observes the real pool; nothing is mocked.
 */
export function countMysqlUse(db: Db) {
  const pool: unknown = Reflect.get(db, '$client')
  if (!(pool instanceof EventEmitter)) throw new Error('the Db has no mysql2 pool to observe')
  let count = 0
  const listener = () => {
    count++
  }
  pool.on('acquire', listener)
  return {
    get count() {
      return count
    },
    stop: () => {
      pool.off('acquire', listener)
    },
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves once `redis` (a client with retries) is connected again after its server came back. */
export async function waitForRedis(redis: Redis, timeoutMs = 10_000): Promise<void> {
  for (let waited = 0; waited < timeoutMs; waited += 50) {
    try {
      if ((await redis.ping()) === 'PONG') return
    } catch {
      // not yet
    }
    await sleep(50)
  }
  throw new Error('Redis did not come back')
}
