import type { Pool } from 'mysql2'
import { AppError } from '../errors'
import { isConnectionExhausted, isDependencyFailure } from '../failures'
import { type Db, PoolAcquireTimeoutError, type Tx } from './client'

const DEADLOCK = 1213
const LOCK_WAIT_TIMEOUT = 1205

/** drizzle wraps the mysql2 error, so the errno sits somewhere down the `cause` chain. */
export function mysqlErrno(error: unknown): number | undefined {
  let current: unknown = error
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth++) {
    const errno = (current as { errno?: unknown }).errno
    if (typeof errno === 'number') return errno
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

export const isRetryableTransactionError = (error: unknown): boolean => {
  const errno = mysqlErrno(error)
  return errno === DEADLOCK || errno === LOCK_WAIT_TIMEOUT
}

/** Fresh connections tried after a lost one, when the lost transaction provably never reached COMMIT. */
const CONNECTION_RETRIES = 2

export type TransactionOptions = {
  /**
   * READ COMMITTED: locking reads take no gap locks, so rows that do not exist yet (a user's first
   * balance row, a product id that is not there) lock nothing that others insert. For transactions that
   * decide on the rows they lock and guard every write, as the order placement does.
   */
  readCommitted?: boolean
  /** How many times the whole transaction runs at most on deadlocks and lock waits before a 503. */
  attempts?: number
  onRetry?: (attempt: number, error: unknown) => void
}

const jitter = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms / 2 + Math.random() * ms))

type AttemptState = { committing: boolean }

/**
 * Runs `attempt` (one transaction) and runs it again when that is known to be safe:
 *
 * - on deadlock (1213) and lock-wait timeout (1205), which rolled the transaction back, up to `attempts`
 *   times in all, then 503 SERVICE_UNAVAILABLE;
 * - on a lost, closed or refused connection while the work ran or before it (COMMIT never sent, so the
 *   server rolls the transaction back when the connection goes), on a fresh connection, twice at most.
 *
 * A connection lost once COMMIT was on its way (`state.committing`) may have lost the COMMIT or only its
 * answer: the outcome is unknown, so it is never run again here; the client gets 503, and a retry with
 * its Idempotency-Key replays the first answer if the transaction did commit.
 */
async function retrying<T>(
  attempt: (state: AttemptState) => Promise<T>,
  options: TransactionOptions,
): Promise<T> {
  const attempts = options.attempts ?? 5
  let lostConnections = 0
  for (let n = 1; ; n++) {
    const state: AttemptState = { committing: false }
    try {
      return await attempt(state)
    } catch (error) {
      if (isRetryableTransactionError(error)) {
        if (n >= attempts) {
          throw new AppError(
            'SERVICE_UNAVAILABLE',
            'The database is too busy to complete this request; retry shortly',
            { retryAfterSeconds: 1, cause: error },
          )
        }
        options.onRetry?.(n, error)
        await jitter(Math.min(200, 5 * 2 ** n))
        continue
      }
      if (!isDependencyFailure(error)) throw error
      // The pool already retried a full server and bounded its wait (shared/db/client.ts): once more
      // here would only multiply the wait.
      if (isConnectionExhausted(error) || error instanceof PoolAcquireTimeoutError) throw error
      if (state.committing) {
        throw new AppError(
          'SERVICE_UNAVAILABLE',
          'The database connection was lost while committing; retry with the same Idempotency-Key',
          { retryAfterSeconds: 1, cause: error },
        )
      }
      if (lostConnections >= CONNECTION_RETRIES) throw error
      lostConnections++
      options.onRetry?.(n, error)
      await jitter(20 * lostConnections)
    }
  }
}

/** `work` in one drizzle transaction, run again where that is safe (see `retrying`). */
export function inTransaction<T>(db: Db, work: (tx: Tx) => Promise<T>, options: TransactionOptions = {}) {
  return retrying(
    (state) =>
      db.transaction(async (tx) => {
        const result = await work(tx)
        state.committing = true
        return result
      }),
    options,
  )
}

/** A statement that has not answered within this is taken for a hung connection, which is destroyed. */
const STATEMENT_DEADLINE_MS = 8_000

export type SqlSession = {
  /** Runs `sql` (several statements separated by `;` are one round trip); resolves to mysql2's results. */
  query(sql: string): Promise<unknown>
  /** Runs `sql` (may be empty) and COMMIT in one round trip. */
  commit(sql?: string): Promise<unknown>
}

/**
 * `work` in one transaction on a connection of `pool`, with SQL text the caller built (values escaped
 * with mysql2's `format`), for the paths where drizzle's query building is the cost: the caller batches
 * statements into few round trips. Run again where that is safe (see `retrying`); rolled back unless
 * `work` commits. A statement that hangs (a network that stopped answering) ends the connection after
 * 8 s, which counts as a lost connection.
 */
export function inSqlTransaction<T>(
  pool: Pool,
  work: (session: SqlSession) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  return retrying(async (state) => {
    const connection = await pool.promise().getConnection()
    const run = async (sql: string) => {
      const timer = setTimeout(() => connection.connection.destroy(), STATEMENT_DEADLINE_MS)
      try {
        // `values: null` tells mysql2 the text is final: without it, it scans the whole text for `?`
        // placeholders again (its format), a long walk over a batch's escaped JSON and names.
        const [results] = await connection.query({ sql, values: null })
        return results
      } finally {
        clearTimeout(timer)
      }
    }
    // START TRANSACTION travels with the first statements (one round trip fewer per transaction); its
    // own results are taken off, so the caller sees what it sent as if sent alone.
    const begin = options.readCommitted
      ? ['SET TRANSACTION ISOLATION LEVEL READ COMMITTED', 'START TRANSACTION']
      : ['START TRANSACTION']
    let open = false
    const send = async (sql: string) => {
      if (open) return run(sql)
      // Open from here on: if the statements after START fail, the transaction is rolled back below.
      open = true
      const results = (await run(`${begin.join(';')};${sql}`)) as unknown[]
      const own = results.slice(begin.length)
      return own.length === 1 ? own[0] : own
    }
    try {
      const result = await work({
        query: send,
        async commit(sql = '') {
          state.committing = true
          const results = await (open
            ? run(sql === '' ? 'COMMIT' : `${sql};COMMIT`)
            : sql === ''
              ? undefined
              : send(`${sql};COMMIT`))
          open = false
          return results
        },
      })
      if (open) await run('ROLLBACK')
      open = false
      return result
    } catch (error) {
      if (open) await run('ROLLBACK').catch(() => undefined)
      throw error
    } finally {
      connection.release()
    }
  }, options)
}
