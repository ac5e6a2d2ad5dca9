import { and, asc, count, eq, gt, inArray, isNotNull, isNull, lt, sql } from 'drizzle-orm'
import type { Db } from '../db/client'
import { outbox } from '../db/schema'

export type OutboxRow = typeof outbox.$inferSelect

export async function findOutboxEvent(db: Db, eventId: string): Promise<OutboxRow | undefined> {
  const [row] = await db.select().from(outbox).where(eq(outbox.eventId, eventId)).limit(1)
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

export type DrainedRow = Pick<OutboxRow, 'id' | 'eventId' | 'type' | 'payload' | 'createdAt'>

/**
 * Takes up to `limit` rows never tried yet, oldest first, locked for this transaction; rows another relay
 * holds are skipped (SKIP LOCKED), so relays scaled out share the work instead of doubling it. `publish`
 * gets them and says which went out and which failed; both are recorded before the locks go. READ
 * COMMITTED: a locking read takes no gap locks there, so orders inserting new rows never wait for a relay.
 */
export async function drainOutbox(
  db: Db,
  limit: number,
  publish: (rows: DrainedRow[]) => Promise<{ published: DrainedRow[]; failed: DrainedRow[] }>,
): Promise<{ taken: number; published: DrainedRow[]; failed: DrainedRow[] }> {
  return db.transaction(
    async (tx) => {
      const rows = await tx
        .select({
          id: outbox.id,
          eventId: outbox.eventId,
          type: outbox.type,
          payload: outbox.payload,
          createdAt: outbox.createdAt,
        })
        .from(outbox)
        .where(and(isNull(outbox.publishedAt), eq(outbox.attempts, 0)))
        .orderBy(asc(outbox.id))
        .limit(limit)
        .for('update', { skipLocked: true })
      if (rows.length === 0) return { taken: 0, published: [], failed: [] }
      const { published, failed } = await publish(rows)
      if (published.length > 0) {
        await tx
          .update(outbox)
          .set({ publishedAt: new Date(), attempts: sql`${outbox.attempts} + 1` })
          .where(
            inArray(
              outbox.id,
              published.map((row) => row.id),
            ),
          )
      }
      if (failed.length > 0) {
        await tx
          .update(outbox)
          .set({ attempts: sql`${outbox.attempts} + 1` })
          .where(
            inArray(
              outbox.id,
              failed.map((row) => row.id),
            ),
          )
      }
      return { taken: rows.length, published, failed }
    },
    { isolationLevel: 'read committed' },
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
