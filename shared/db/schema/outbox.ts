import { char, index, int, json, mysqlTable, varchar } from 'drizzle-orm/mysql-core'
import { id, timestamp } from './columns'

export const outbox = mysqlTable(
  'outbox',
  {
    id: id('id').autoincrement().primaryKey(),
    eventId: char('event_id', { length: 36 }).notNull().unique(),
    /** The routing key, e.g. order.completed. */
    type: varchar('type', { length: 64 }).notNull(),
    aggregateId: id('aggregate_id').notNull(),
    /** The whole message body as published. */
    payload: json('payload').notNull(),
    attempts: int('attempts').notNull().default(0),
    createdAt: timestamp('created_at').notNull(),
    publishedAt: timestamp('published_at'),
  },
  (t) => [
    index('outbox_published_at_id').on(t.publishedAt, t.id),
    index('outbox_aggregate').on(t.aggregateId, t.type),
  ],
)
