import { char, mysqlTable, primaryKey, varchar } from 'drizzle-orm/mysql-core'
import { timestamp } from './columns'

/** Consumer-side dedupe: one row per (consumer, event id), written in the same transaction as the effect. */
export const processedEvents = mysqlTable(
  'processed_events',
  {
    consumer: varchar('consumer', { length: 64 }).notNull(),
    eventId: char('event_id', { length: 36 }).notNull(),
    processedAt: timestamp('processed_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.consumer, t.eventId] })],
)
