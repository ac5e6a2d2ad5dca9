import { EventEmitter } from 'node:events'
import { drizzle, type MySql2Database } from 'drizzle-orm/mysql2'
import mysql from 'mysql2'
import {
  DEFAULT_DATABASE_POOL_SIZE,
  DEFAULT_DATABASE_REPLICA_POOL_SIZE,
  MIN_DATABASE_POOL_SIZE,
} from '../config'
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

function createPool(url: string, connectionLimit: number, idleTimeout: number): mysql.Pool {
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
}): Database {
  const limit = Math.max(MIN_DATABASE_POOL_SIZE, options.connectionLimit ?? DEFAULT_DATABASE_POOL_SIZE)
  const replicaLimit = Math.max(
    MIN_DATABASE_POOL_SIZE,
    options.replicaConnectionLimit ?? DEFAULT_DATABASE_REPLICA_POOL_SIZE,
  )
  const idleTimeout = options.idleTimeoutMs ?? POOL_IDLE_TIMEOUT_MS
  const primaryPool = createPool(options.url, limit, idleTimeout)
  const replicaPool = options.replicaUrl
    ? createPool(options.replicaUrl, replicaLimit, idleTimeout)
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
