import { AppError } from '../errors'
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

export type TransactionOptions = {
  /** How many times the whole transaction runs at most before the caller gets 503. */
  attempts?: number
  onRetry?: (attempt: number, error: unknown) => void
}

/**
 * Runs `work` in one transaction and retries the whole of it on deadlock (1213) and lock-wait timeout (1205),
 * with jittered backoff. `work` must therefore be safe to run again: everything it does is inside the
 * transaction, which rolled back. After the last attempt the caller gets 503 SERVICE_UNAVAILABLE.
 */
export async function inTransaction<T>(
  db: Db,
  work: (tx: Tx) => Promise<T>,
  options: TransactionOptions = {},
) {
  const attempts = options.attempts ?? 5
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction(work)
    } catch (error) {
      if (!isRetryableTransactionError(error)) throw error
      if (attempt >= attempts) {
        throw new AppError(
          'SERVICE_UNAVAILABLE',
          'The database is too busy to complete this request; retry shortly',
          {
            retryAfterSeconds: 1,
            cause: error,
          },
        )
      }
      options.onRetry?.(attempt, error)
      const backoff = Math.min(200, 5 * 2 ** attempt)
      await new Promise((resolve) => setTimeout(resolve, backoff / 2 + Math.random() * backoff))
    }
  }
}
