import { createHash, randomUUID } from 'node:crypto'
import { and, eq, gt, lt, sql } from 'drizzle-orm'
import type { Context } from 'hono'
import type { Db, Tx } from '../db/client'
import { idempotencyKeys } from '../db/schema'
import { inTransaction, mysqlErrno } from '../db/transaction'
import type { Deps } from '../deps'
import { AppError } from '../errors'

export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
/** How long a request holds its key as "in flight"; far above any request's run time. */
const IN_FLIGHT_MS = 30_000
const DUPLICATE_ENTRY = 1062

export type StoredResponse = { status: number; body: unknown }
export type IdempotentResult = StoredResponse & { replayed: boolean }

export type IdempotentRequest = {
  userId: number
  /** The validated Idempotency-Key header, or undefined when the client sent none. */
  key: string | undefined
  method: string
  path: string
  body: unknown
}

/** `Idempotency-Key`: 1..255 printable ASCII characters (SPEC §1), else 400. */
export function readIdempotencyKey(c: Context): string | undefined {
  const key = c.req.header('Idempotency-Key')
  if (key === undefined) return undefined
  if (!/^[\x20-\x7e]{1,255}$/.test(key)) {
    throw new AppError('VALIDATION_FAILED', 'Idempotency-Key must be 1 to 255 printable ASCII characters', {
      errors: [{ path: 'headers.Idempotency-Key', message: 'must be 1 to 255 printable ASCII characters' }],
    })
  }
  return key
}

/** JSON with object keys sorted, so that `{"a":1,"b":2}` and `{"b":2,"a":1}` are the same request. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')

async function findLiveKey(db: Db, userId: number, key: string) {
  const [row] = await db
    .select()
    .from(idempotencyKeys)
    .where(
      and(
        eq(idempotencyKeys.userId, userId),
        eq(idempotencyKeys.key, key),
        gt(idempotencyKeys.createdAt, new Date(Date.now() - IDEMPOTENCY_TTL_MS)),
      ),
    )
  return row
}

function replayOrReject(row: typeof idempotencyKeys.$inferSelect, request: IdempotentRequest, hash: string) {
  if (row.method !== request.method || row.path !== request.path || row.requestHash !== hash) {
    throw new AppError(
      'IDEMPOTENCY_KEY_REUSED',
      'This Idempotency-Key was already used for a different request; use a new key for a new request',
    )
  }
  return { status: row.responseStatus, body: JSON.parse(row.responseBody) as unknown, replayed: true }
}

/**
 * Runs `work` in one retried transaction (see inTransaction) under the request's Idempotency-Key.
 *
 * - A key seen within 24 h with the same method, path and body: the stored response, nothing else runs.
 *   Another method, path or body: 422 IDEMPOTENCY_KEY_REUSED.
 * - A key whose first request is still running (a Redis marker): 409 IDEMPOTENCY_KEY_IN_USE.
 * - Otherwise `work` runs, and a successful response is stored in the same transaction as its effect,
 *   so no crash can leave an effect without its key. If Redis is down, the primary key of
 *   idempotency_keys still lets only one transaction commit: the others replay its response.
 *
 * Failures (4xx from `work`) are not stored: they changed nothing, so a retry with the same key may succeed.
 */
export async function runIdempotent(
  deps: Pick<Deps, 'db' | 'redis' | 'logger'>,
  request: IdempotentRequest,
  work: (tx: Tx) => Promise<StoredResponse>,
  onRetry?: (attempt: number) => void,
): Promise<IdempotentResult> {
  const { db, redis } = deps
  const key = request.key
  if (key === undefined) {
    return { ...(await inTransaction(db, work, { onRetry })), replayed: false }
  }
  const hash = sha256(canonicalJson(request.body))
  const earlier = await findLiveKey(db, request.userId, key)
  if (earlier) return replayOrReject(earlier, request, hash)

  const marker = `idem:${request.userId}:${sha256(key)}`
  const token = randomUUID()
  let holdsMarker = false
  try {
    holdsMarker = (await redis.set(marker, token, 'PX', IN_FLIGHT_MS, 'NX')) === 'OK'
    if (!holdsMarker) {
      const finished = await findLiveKey(db, request.userId, key)
      if (finished) return replayOrReject(finished, request, hash)
      throw new AppError(
        'IDEMPOTENCY_KEY_IN_USE',
        'A request with this Idempotency-Key is still being processed',
        {
          retryAfterSeconds: 1,
        },
      )
    }
  } catch (error) {
    if (error instanceof AppError) throw error
    // Redis is unavailable: carry on without the in-flight marker; MySQL's primary key keeps the promise.
    deps.logger.warn('idempotency marker unavailable; relying on MySQL alone', { error })
  }

  try {
    const response = await inTransaction(
      db,
      async (tx) => {
        const result = await work(tx)
        if (result.status >= 200 && result.status < 300) {
          const now = new Date()
          await tx
            .delete(idempotencyKeys)
            .where(
              and(
                eq(idempotencyKeys.userId, request.userId),
                eq(idempotencyKeys.key, key),
                lt(idempotencyKeys.createdAt, new Date(now.getTime() - IDEMPOTENCY_TTL_MS)),
              ),
            )
          await tx.insert(idempotencyKeys).values({
            userId: request.userId,
            key,
            method: request.method,
            path: request.path,
            requestHash: hash,
            responseStatus: result.status,
            responseBody: JSON.stringify(result.body),
            createdAt: now,
          })
        }
        return result
      },
      { onRetry },
    )
    return { ...response, replayed: false }
  } catch (error) {
    if (mysqlErrno(error) === DUPLICATE_ENTRY) {
      // A concurrent request with this key committed first (possible only without the Redis marker).
      const winner = await findLiveKey(db, request.userId, key)
      if (winner) return replayOrReject(winner, request, hash)
    }
    throw error
  } finally {
    if (holdsMarker) {
      await redis
        .eval(
          "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
          1,
          marker,
          token,
        )
        .catch(() => undefined)
    }
  }
}

/** The response for a handler: the stored status and body, and `Idempotent-Replayed: true` on a replay. */
export function idempotentResponse(c: Context, result: IdempotentResult): Response {
  if (result.replayed) c.header('Idempotent-Replayed', 'true')
  return c.json(result.body, result.status as 200)
}

/** Deletes keys older than 24 h in batches; returns how many rows went. Run periodically by a worker. */
export async function purgeExpiredIdempotencyKeys(db: Db, now = new Date(), batch = 1_000): Promise<number> {
  let total = 0
  for (;;) {
    const [result] = await db.execute(
      sql`DELETE FROM ${idempotencyKeys} WHERE ${idempotencyKeys.createdAt} < ${new Date(now.getTime() - IDEMPOTENCY_TTL_MS)} LIMIT ${batch}`,
    )
    const affected = (result as { affectedRows?: number }).affectedRows ?? 0
    total += affected
    if (affected < batch) return total
  }
}
