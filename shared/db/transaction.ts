import { AppError } from '../errors'
import { isDependencyFailure } from '../failures'
import type { Db, Tx } from './client'

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
  /** How many times the whole transaction runs at most on deadlocks and lock waits before a 503. */
  attempts?: number
  onRetry?: (attempt: number, error: unknown) => void
}

const jitter = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms / 2 + Math.random() * ms))

/**
 * Runs `work` in one transaction, and runs the whole of it again when that is known to be safe:
 *
 * - on deadlock (1213) and lock-wait timeout (1205), which rolled the transaction back, up to `attempts`
 *   times in all, then 503 SERVICE_UNAVAILABLE;
 * - on a lost, closed or refused connection while `work` ran or before it (COMMIT never sent, so the
 *   server rolls the transaction back when the connection goes), on a fresh connection, twice at most.
 *
 * A connection lost once `work` had finished may have lost the COMMIT or only its answer: the outcome is
 * unknown, so it is never run again here; the client gets 503, and a retry with its Idempotency-Key
 * replays the first answer if the transaction did commit. `work` must be safe to run again: everything it
 * does is inside the transaction.
 */
export async function inTransaction<T>(
  db: Db,
  work: (tx: Tx) => Promise<T>,
  options: TransactionOptions = {},
) {
  const attempts = options.attempts ?? 5
  let lostConnections = 0
  for (let attempt = 1; ; attempt++) {
    let committing = false
    try {
      return await db.transaction(async (tx) => {
        const result = await work(tx)
        committing = true
        return result
      })
    } catch (error) {
      if (isRetryableTransactionError(error)) {
        if (attempt >= attempts) {
          throw new AppError(
            'SERVICE_UNAVAILABLE',
            'The database is too busy to complete this request; retry shortly',
            { retryAfterSeconds: 1, cause: error },
          )
        }
        options.onRetry?.(attempt, error)
        await jitter(Math.min(200, 5 * 2 ** attempt))
        continue
      }
      if (!isDependencyFailure(error)) throw error
      if (committing) {
        throw new AppError(
          'SERVICE_UNAVAILABLE',
          'The database connection was lost while committing; retry with the same Idempotency-Key',
          { retryAfterSeconds: 1, cause: error },
        )
      }
      if (lostConnections >= CONNECTION_RETRIES) throw error
      lostConnections++
      options.onRetry?.(attempt, error)
      await jitter(20 * lostConnections)
    }
  }
}
