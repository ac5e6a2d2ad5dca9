import { createHash, randomUUID } from 'node:crypto'
import { and, eq, gt, lt, sql } from 'drizzle-orm'
import type { Context } from 'hono'
import type { Db, Tx } from '../db/client'
import { idempotencyKeys } from '../db/schema'
import { sqlText } from '../db/sql-text'
import { mysqlErrno } from '../db/transaction'
import type { Deps } from '../deps'
import { AppError } from '../errors'

export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
/** How long a request holds its key as "in flight"; far above any request's run time. */
const IN_FLIGHT_MS = 30_000
const DUPLICATE_ENTRY = 1062

/**
 * What a verb uses inside the transaction of its effect, with the result it is about to return: the key
 * is stored with that result in the same transaction, so no crash can leave an effect without its key.
 * Without an Idempotency-Key both do nothing.
 */
export type RecordEffect = {
  /** Stores the key in a drizzle transaction. */
  insert(tx: Tx, result: unknown): Promise<void>
  /**
   * The statements that store the key, for a verb that sends SQL of its own ('' without a key). If the
   * INSERT fails with a duplicate key, a concurrent request with the same key committed first: the verb
   * rolls back and throws `new KeyTaken()` for this request, which then answers with the winner's response.
   */
  sql(result: unknown): string
}

export const noKey: RecordEffect = { insert: async () => undefined, sql: () => '' }

export type IdempotentRequest = {
  userId: number
  /** The validated Idempotency-Key header, or undefined when the client sent none. */
  key: string | undefined
  method: string
  path: string
  /** The validated request body (undefined for routes without one). */
  body: unknown
  /** The status of a success, stored with the result for replays. */
  status: number
}

export type IdempotentResult = { status: number; body: unknown; replayed: boolean }

/** `Idempotency-Key`: 1..255 printable ASCII characters (docs/api.md), else 400. */
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

const liveSince = () => new Date(Date.now() - IDEMPOTENCY_TTL_MS)

async function findLiveKey(db: Db, userId: number, key: string) {
  const [row] = await db
    .select()
    .from(idempotencyKeys)
    .where(
      and(
        eq(idempotencyKeys.userId, userId),
        eq(idempotencyKeys.key, key),
        gt(idempotencyKeys.createdAt, liveSince()),
      ),
    )
  return row
}

function replayOrReject(
  row: typeof idempotencyKeys.$inferSelect,
  request: IdempotentRequest,
  hash: string,
): IdempotentResult {
  if (row.method !== request.method || row.path !== request.path || row.requestHash !== hash) {
    throw new AppError(
      'IDEMPOTENCY_KEY_REUSED',
      'This Idempotency-Key was already used for a different request; use a new key for a new request',
    )
  }
  return { status: row.responseStatus, body: JSON.parse(row.responseBody) as unknown, replayed: true }
}

/** A concurrent request with the same key committed first: this transaction must not commit too. */
export class KeyTaken extends Error {
  override name = 'KeyTaken'
}

const inUse = () =>
  new AppError('IDEMPOTENCY_KEY_IN_USE', 'A request with this Idempotency-Key is still being processed', {
    retryAfterSeconds: 1,
  })

export type IdempotencyDeps = Pick<Deps, 'db' | 'redis' | 'logger'>

/**
 * The one idempotency mechanism of the keyed POSTs (charge, order, cancel, coupon issue), run by the
 * route layer before the handler, so that nothing else (a stock gate, a cache, a Redis script) can
 * answer a replay first:
 *
 * 1. A key seen within 24 h with the same method, path and body: its stored response, and nothing else
 *    runs. Another method, path or body: 422 IDEMPOTENCY_KEY_REUSED.
 * 2. A key whose first request is still running (a Redis marker): 409 IDEMPOTENCY_KEY_IN_USE, unless it
 *    finished meanwhile (then 1.).
 * 3. Otherwise the handler runs, and its verb records the key with its result inside the transaction of
 *    its effect (RecordEffect). If Redis is down, the primary key of idempotency_keys still lets only one
 *    transaction commit: the others roll back and replay its response.
 *
 * Refusals (4xx) are not stored: they changed nothing, so a retry with the same key may succeed.
 */
export async function runIdempotent(
  deps: IdempotencyDeps,
  request: IdempotentRequest,
  handle: (record: RecordEffect) => Promise<unknown>,
): Promise<IdempotentResult> {
  const { db, redis } = deps
  const key = request.key
  if (key === undefined) return { status: request.status, body: await handle(noKey), replayed: false }

  const hash = sha256(canonicalJson(request.body))
  const earlier = await findLiveKey(db, request.userId, key)
  if (earlier) return replayOrReject(earlier, request, hash)

  const marker = `idem:${request.userId}:${sha256(key)}`
  const token = randomUUID()
  let markedHere: boolean
  try {
    markedHere = (await redis.set(marker, token, 'PX', IN_FLIGHT_MS, 'NX')) === 'OK'
  } catch (error) {
    // Redis is unavailable: carry on without the in-flight marker; MySQL's primary key keeps the promise.
    deps.logger.warn('idempotency marker unavailable; relying on MySQL alone', { error })
    markedHere = true
  }
  if (!markedHere) {
    const finished = await findLiveKey(db, request.userId, key)
    if (finished) return replayOrReject(finished, request, hash)
    throw inUse()
  }

  // The result the verb stored: the handler must answer with that very object, or replays would differ.
  let recorded: { result: unknown } | undefined
  const rowFor = (result: unknown) => {
    recorded = { result }
    return {
      userId: request.userId,
      key,
      method: request.method,
      path: request.path,
      requestHash: hash,
      responseStatus: request.status,
      responseBody: JSON.stringify(result),
      createdAt: new Date(),
    }
  }
  const record: RecordEffect = {
    async insert(tx, result) {
      const row = rowFor(result)
      try {
        await tx.insert(idempotencyKeys).values(row)
      } catch (error) {
        if (mysqlErrno(error) !== DUPLICATE_ENTRY) throw error
        // The row is either a live key (a concurrent request committed first) or one past 24 h, which
        // this request may take over. A failed INSERT leaves the transaction open (statement rollback).
        const [expired] = await tx
          .delete(idempotencyKeys)
          .where(
            and(
              eq(idempotencyKeys.userId, request.userId),
              eq(idempotencyKeys.key, key),
              lt(idempotencyKeys.createdAt, liveSince()),
            ),
          )
        if (expired.affectedRows === 0) throw new KeyTaken()
        await tx.insert(idempotencyKeys).values(row)
      }
    },
    sql(result) {
      const row = rowFor(result)
      // An expired row with this key is taken over; a live one makes the INSERT fail (KeyTaken).
      return sqlText(
        'DELETE FROM idempotency_keys WHERE user_id = ? AND idempotency_key = ? AND created_at < ?;' +
          'INSERT INTO idempotency_keys (user_id, idempotency_key, method, path, request_hash, response_status, response_body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        [
          row.userId,
          row.key,
          liveSince(),
          row.userId,
          row.key,
          row.method,
          row.path,
          row.requestHash,
          row.responseStatus,
          row.responseBody,
          row.createdAt,
        ],
      )
    },
  }

  try {
    const body = await handle(record)
    if (recorded?.result !== body) {
      // A verb that forgot to record, or answered something else than it stored: replays would differ.
      deps.logger.error('idempotent handler did not record the response it returned', {
        method: request.method,
        path: request.path,
      })
    }
    return { status: request.status, body, replayed: false }
  } catch (error) {
    if (error instanceof KeyTaken) {
      const winner = await findLiveKey(db, request.userId, key)
      if (winner) return replayOrReject(winner, request, hash)
      throw inUse()
    }
    throw error
  } finally {
    await redis.deleteIfEquals(marker, token).catch(() => undefined)
  }
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
