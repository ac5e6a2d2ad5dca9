import { and, asc, count, eq, gt, isNotNull, isNull, lt, sql } from 'drizzle-orm'
import { type Db, poolOf } from '../db/client'
import { outbox } from '../db/schema'
import { sqlText } from '../db/sql-text'
import { inSqlTransaction } from '../db/transaction'

export type OutboxRow = typeof outbox.$inferSelect

/** One row for a retry job, with its payload's text as stored (see DrainedRow). */
export async function findOutboxEvent(
  db: Db,
  eventId: string,
): Promise<(Pick<OutboxRow, 'type' | 'createdAt' | 'publishedAt'> & { body: string }) | undefined> {
  const [row] = await db
    .select({
      type: outbox.type,
      body: sql<string>`CAST(${outbox.payload} AS CHAR)`,
      createdAt: outbox.createdAt,
      publishedAt: outbox.publishedAt,
    })
    .from(outbox)
    .where(eq(outbox.eventId, eventId))
    .limit(1)
  return row
}

/** Guarded on `published_at IS NULL`, so that a second publish of the same event keeps the first time. */
export async function markOutboxEventPublished(db: Db, eventId: string, at: Date): Promise<void> {
  await db
    .update(outbox)
    .set({ publishedAt: at, attempts: sql`${outbox.attempts} + 1` })
    .where(and(eq(outbox.eventId, eventId), isNull(outbox.publishedAt)))
}

/** Counts a failed publish on the row, for the operator looking at a stuck event. */
export async function countOutboxAttempt(db: Db, eventId: string): Promise<void> {
  await db
    .update(outbox)
    .set({ attempts: sql`${outbox.attempts} + 1` })
    .where(eq(outbox.eventId, eventId))
}

/**
 * Unpublished rows that were tried before (attempts > 0: a failed publish, or a row reset for a replay),
 * created before `olderThan`, in id order after `afterId` (keyset pagination: a sweep that meets a run of
 * stuck rows still gets past them on its next pass). Rows never tried are the drain's.
 */
export async function findRetriedOutboxEvents(
  db: Db,
  options: { olderThan: Date; afterId: number; limit: number },
): Promise<Array<{ id: number; eventId: string }>> {
  return db
    .select({ id: outbox.id, eventId: outbox.eventId })
    .from(outbox)
    .where(
      and(
        isNull(outbox.publishedAt),
        gt(outbox.attempts, 0),
        gt(outbox.id, options.afterId),
        lt(outbox.createdAt, options.olderThan),
      ),
    )
    .orderBy(asc(outbox.id))
    .limit(options.limit)
}

/**
 * A row taken by the drain. `body` is the payload column's text exactly as the order's transaction
 * wrote it (JSON.stringify of the envelope): it is published as it is, without being parsed and
 * serialised again. MariaDB keeps a JSON column's text verbatim (JSON is LONGTEXT there), so these are
 * the bytes of the contract's body; `CAST(… AS CHAR)` keeps mysql2 from parsing it on the way.
 */
export type DrainedRow = { id: number; eventId: string; type: string; body: string; createdAt: Date }

const DRAIN_SELECT =
  'SELECT id, event_id AS eventId, type, CAST(payload AS CHAR) AS body, created_at AS createdAt FROM outbox ' +
  'WHERE published_at IS NULL AND attempts = 0 ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED'

/**
 * Takes up to `limit` rows never tried yet, oldest first, locked for this transaction; rows another relay
 * holds are skipped (SKIP LOCKED), so relays scaled out share the work instead of doubling it. `publish`
 * gets them and says which went out and which failed; both are recorded before the locks go. READ
 * COMMITTED: a locking read takes no gap locks there, so orders inserting new rows never wait for a relay.
 * Two round trips: the locking read (with START TRANSACTION), then one UPDATE per outcome and COMMIT.
 */
export async function drainOutbox(
  db: Db,
  limit: number,
  publish: (rows: DrainedRow[]) => Promise<{ published: DrainedRow[]; failed: DrainedRow[] }>,
): Promise<{ taken: number; published: DrainedRow[]; failed: DrainedRow[] }> {
  return inSqlTransaction(
    poolOf(db),
    async (session) => {
      const rows = (await session.query(sqlText(DRAIN_SELECT, [limit]))) as DrainedRow[]
      if (rows.length === 0) return { taken: 0, published: [], failed: [] }
      const { published, failed } = await publish(rows)
      const ids = (list: DrainedRow[]) => list.map((row) => row.id)
      await session.commit(
        [
          published.length === 0
            ? ''
            : sqlText(
                'UPDATE outbox SET published_at = ?, attempts = attempts + 1 WHERE id IN (?) AND published_at IS NULL',
                [new Date(), ids(published)],
              ),
          failed.length === 0
            ? ''
            : sqlText('UPDATE outbox SET attempts = attempts + 1 WHERE id IN (?)', [ids(failed)]),
        ]
          .filter((statement) => statement !== '')
          .join(';'),
      )
      return { taken: rows.length, published, failed }
    },
    // A deadlock retried here would publish the batch again: the rows are locked, so none is expected.
    { readCommitted: true, attempts: 1 },
  )
}

export async function countUnpublishedOutboxEvents(db: Db): Promise<number> {
  const [row] = await db.select({ n: count() }).from(outbox).where(isNull(outbox.publishedAt))
  return row?.n ?? 0
}

/** Deletes rows published before `before`, in batches so that no statement holds locks for long. */
export async function deletePublishedOutboxEvents(db: Db, before: Date, batch = 1_000): Promise<number> {
  let total = 0
  for (;;) {
    const [result] = await db.execute(
      sql`DELETE FROM ${outbox} WHERE ${isNotNull(outbox.publishedAt)} AND ${lt(outbox.publishedAt, before)} ORDER BY ${outbox.publishedAt} LIMIT ${batch}`,
    )
    const affected = (result as { affectedRows?: number }).affectedRows ?? 0
    total += affected
    if (affected < batch) return total
  }
}
