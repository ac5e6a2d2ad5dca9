import { channel } from 'node:diagnostics_channel'
import { EventEmitter } from 'node:events'
import { drizzle, type MySql2Database } from 'drizzle-orm/mysql2'
import mysql from 'mysql2'
import {
  DEFAULT_DATABASE_POOL_SIZE,
  DEFAULT_DATABASE_REPLICA_POOL_SIZE,
  MIN_DATABASE_POOL_SIZE,
} from '../config'
import { isConnectionExhausted } from '../failures'
import { DB_CONNECTION_EXHAUSTED_CHANNEL, type DbConnectionExhaustedEvent } from '../metrics'
import * as schema from './schema'

export type Db = MySql2Database<typeof schema>
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0]
/** Either the pool or an open transaction: verbs that take `DbOrTx` can join a caller's transaction. */
export type DbOrTx = Db | Tx

/** The mysql2 pool under a drizzle Db: for the paths that send SQL text of their own (inSqlTransaction). */
export function poolOf(db: Db): mysql.Pool {
  const pool: unknown = Reflect.get(db, '$client')
  if (!(pool instanceof EventEmitter) || !('getConnection' in pool))
    throw new Error('the Db has no mysql2 pool')
  return pool as mysql.Pool
}

export type Database = {
  /** The primary: every write, and every read that decides a write or shows a user their own fresh write. */
  db: Db
  /** The replica when DATABASE_REPLICA_URL is set, else the primary: statistics and public catalogue reads. */
  dbRead: Db
  ping(): Promise<void>
  close(): Promise<void>
}

/**
 * Every session runs in UTC (DATETIME columns hold UTC) and waits at most 5 s for a row lock, so a
 * stuck lock turns into a retried transaction or a 503 rather than a request hanging for InnoDB's default 50 s.
 */
const SESSION_SETUP = "SET time_zone = '+00:00', innodb_lock_wait_timeout = 5"

/** Idle connections are closed after this long, so a function that is not called holds nothing. */
export const POOL_IDLE_TIMEOUT_MS = 30_000

/**
 * The longest a caller waits for a connection, retries included, before its request gets 503. mysql2
 * bounds only the opening of a new connection (connectTimeout); a caller queued behind a saturated pool
 * waits for a release however long that takes (its `queueLimit` refuses callers beyond a queue length,
 * `waitForConnections: false` refuses any wait: neither bounds the wait itself). Equal to
 * innodb_lock_wait_timeout (SESSION_SETUP): no request waits longer for a connection than a transaction
 * may wait for a row lock.
 */
export const POOL_ACQUIRE_TIMEOUT_MS = 5_000

/**
 * A server or pool refusing a connection (MySQL 1040, 1203, 1226; mysql2's queue limit) is tried this
 * many times in all, after a short jittered pause each, so a burst that fills max_connections for a
 * moment costs a few hundred milliseconds instead of a 503.
 */
export const EXHAUSTED_TRIES = 3
/** The pause before retry n (1, 2, …) is between n and 3n times this: 40–120 ms, then 80–240 ms. */
export const EXHAUSTED_RETRY_BASE_MS = 40

/** No free connection within the acquire timeout; a dependency failure (503 with Retry-After) by its code. */
export class PoolAcquireTimeoutError extends Error {
  override name = 'PoolAcquireTimeoutError'
  readonly code = 'ETIMEDOUT'
  constructor(pool: string, timeoutMs: number) {
    super(`No free connection to the ${pool} within ${timeoutMs} ms`)
  }
}

const exhaustedEvents = channel(DB_CONNECTION_EXHAUSTED_CHANNEL)
const report = (event: DbConnectionExhaustedEvent) => {
  if (exhaustedEvents.hasSubscribers) exhaustedEvents.publish(event)
}

type Acquired = (error: NodeJS.ErrnoException | null, connection: mysql.PoolConnection) => void
type AcquireSettings = { acquireTimeoutMs: number; tries: number; retryBaseMs: number }

/**
 * Every connection this code uses is handed out by the pool's getConnection: drizzle's transactions call
 * it, and so do the pool's own query() and execute() (mysql2 calls `this.getConnection`), which drizzle's
 * other statements and raw mysql2 callers go through. Replacing it on the pool object is therefore the
 * one place where exhaustion is retried and waiting is bounded, whoever asks.
 */
function guardAcquisition(
  pool: mysql.Pool,
  name: DbConnectionExhaustedEvent['pool'],
  settings: AcquireSettings,
) {
  const acquireOnce = pool.getConnection.bind(pool)
  const attempt = (deadline: number) =>
    new Promise<mysql.PoolConnection>((resolve, reject) => {
      let settled = false
      const timer = setTimeout(
        () => {
          settled = true
          reject(new PoolAcquireTimeoutError(name, settings.acquireTimeoutMs))
        },
        Math.max(0, deadline - Date.now()),
      )
      acquireOnce((error, connection) => {
        if (settled) {
          // Handed over after the caller stopped waiting: straight back to the pool, for the next one.
          if (!error) connection.release()
          return
        }
        settled = true
        clearTimeout(timer)
        if (error) reject(error)
        else resolve(connection)
      })
    })
  const acquire = async (): Promise<mysql.PoolConnection> => {
    const deadline = Date.now() + settings.acquireTimeoutMs
    for (let tries = 1; ; tries++) {
      try {
        return await attempt(deadline)
      } catch (error) {
        if (error instanceof PoolAcquireTimeoutError) {
          report({ pool: name, outcome: 'gave_up' })
          throw error
        }
        if (!isConnectionExhausted(error)) throw error
        const pause = settings.retryBaseMs * tries * (1 + 2 * Math.random())
        if (tries >= settings.tries || Date.now() + pause >= deadline) {
          report({ pool: name, outcome: 'gave_up' })
          throw error
        }
        report({ pool: name, outcome: 'retried' })
        await new Promise((resolve) => setTimeout(resolve, pause))
      }
    }
  }
  pool.getConnection = (callback: Acquired) => {
    void acquire().then(
      (connection) => callback(null, connection),
      (error: NodeJS.ErrnoException) => callback(error, undefined as unknown as mysql.PoolConnection),
    )
  }
}

function createPool(
  url: string,
  name: DbConnectionExhaustedEvent['pool'],
  connectionLimit: number,
  idleTimeout: number,
  acquire: AcquireSettings,
): mysql.Pool {
  const pool = mysql.createPool({
    uri: url,
    connectionLimit,
    // mysql2 sweeps idle connections (every second, closing those idle longer than idleTimeout) only
    // while maxIdle is below the limit; one below never trims a pool whose connections are in use.
    maxIdle: connectionLimit - 1,
    idleTimeout,
    connectTimeout: 5_000,
    enableKeepAlive: true,
    timezone: 'Z',
    supportBigNumbers: true,
    bigNumberStrings: false,
    decimalNumbers: true,
    // mysql2 otherwise captures a stack trace on every query of the promise API, for nicer stacks on
    // failures: about 6 % of an order's CPU in a profile. Our errors are logged with their SQL error code.
    trace: false,
    // The order path sends its statements in few round trips (shared/orders/placement.ts). Every value
    // in them is escaped by mysql2's format, never concatenated from input.
    multipleStatements: true,
  })
  pool.on('connection', (connection) => {
    // Queued on the connection before any caller's query, so no query ever runs without it.
    connection.query(SESSION_SETUP, () => undefined)
  })
  guardAcquisition(pool, name, acquire)
  return pool
}

/**
 * Pools open connections on first use (nothing at creation) up to their limit, and close them again
 * after POOL_IDLE_TIMEOUT_MS idle: the worst case a process holds is its two limits, which is what the
 * connection budget adds up (scripts/connection-budget.ts).
 */
export function createDatabase(options: {
  url: string
  replicaUrl?: string | undefined
  /** Connections to the primary (DATABASE_POOL_SIZE). */
  connectionLimit?: number
  /** Connections to the replica (DATABASE_REPLICA_POOL_SIZE). */
  replicaConnectionLimit?: number
  idleTimeoutMs?: number
  /** POOL_ACQUIRE_TIMEOUT_MS unless a test needs another bound. */
  acquireTimeoutMs?: number
}): Database {
  const limit = Math.max(MIN_DATABASE_POOL_SIZE, options.connectionLimit ?? DEFAULT_DATABASE_POOL_SIZE)
  const replicaLimit = Math.max(
    MIN_DATABASE_POOL_SIZE,
    options.replicaConnectionLimit ?? DEFAULT_DATABASE_REPLICA_POOL_SIZE,
  )
  const idleTimeout = options.idleTimeoutMs ?? POOL_IDLE_TIMEOUT_MS
  const acquire: AcquireSettings = {
    acquireTimeoutMs: options.acquireTimeoutMs ?? POOL_ACQUIRE_TIMEOUT_MS,
    tries: EXHAUSTED_TRIES,
    retryBaseMs: EXHAUSTED_RETRY_BASE_MS,
  }
  const primaryPool = createPool(options.url, 'primary', limit, idleTimeout, acquire)
  const replicaPool = options.replicaUrl
    ? createPool(options.replicaUrl, 'replica', replicaLimit, idleTimeout, acquire)
    : undefined
  const db = drizzle({ client: primaryPool, schema, mode: 'default' })
  const dbRead = replicaPool ? drizzle({ client: replicaPool, schema, mode: 'default' }) : db
  const pools = replicaPool ? [primaryPool, replicaPool] : [primaryPool]
  return {
    db,
    dbRead,
    async ping() {
      await Promise.all(pools.map((pool) => pool.promise().query('SELECT 1')))
    },
    async close() {
      await Promise.all(pools.map((pool) => pool.promise().end()))
    },
  }
}
