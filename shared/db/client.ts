import { drizzle, type MySql2Database } from 'drizzle-orm/mysql2'
import mysql from 'mysql2'
import * as schema from './schema'

export type Db = MySql2Database<typeof schema>
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0]
/** Either the pool or an open transaction: verbs that take `DbOrTx` can join a caller's transaction. */
export type DbOrTx = Db | Tx

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

function createPool(url: string, connectionLimit: number): mysql.Pool {
  const pool = mysql.createPool({
    uri: url,
    connectionLimit,
    maxIdle: connectionLimit,
    idleTimeout: 60_000,
    connectTimeout: 5_000,
    enableKeepAlive: true,
    timezone: 'Z',
    supportBigNumbers: true,
    bigNumberStrings: false,
    decimalNumbers: true,
    // mysql2 otherwise captures a stack trace on every query of the promise API, for nicer stacks on
    // failures: about 6 % of an order's CPU in a profile. Our errors are logged with their SQL error code.
    trace: false,
  })
  pool.on('connection', (connection) => {
    // Queued on the connection before any caller's query, so no query ever runs without it.
    connection.query(SESSION_SETUP, () => undefined)
  })
  return pool
}

/**
 * Connections per pool (each process has one to the primary and, with DATABASE_REPLICA_URL, one to the
 * replica). Exported for the deployment's connection budget (scripts/infra/k8s.ts).
 */
export const DEFAULT_CONNECTION_LIMIT = 20

export function createDatabase(options: {
  url: string
  replicaUrl?: string | undefined
  connectionLimit?: number
}): Database {
  const limit = options.connectionLimit ?? DEFAULT_CONNECTION_LIMIT
  const primaryPool = createPool(options.url, limit)
  const replicaPool = options.replicaUrl ? createPool(options.replicaUrl, limit) : undefined
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
