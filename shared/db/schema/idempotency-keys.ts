import { char, index, int, mediumtext, mysqlTable, primaryKey, varchar } from 'drizzle-orm/mysql-core'
import { id, timestamp } from './columns'

export const idempotencyKeys = mysqlTable(
  'idempotency_keys',
  {
    userId: id('user_id').notNull(),
    key: varchar('idempotency_key', { length: 255 }).notNull(),
    method: varchar('method', { length: 8 }).notNull(),
    path: varchar('path', { length: 255 }).notNull(),
    /** sha256 of the request body, to tell a replay from a reuse with another body. */
    requestHash: char('request_hash', { length: 64 }).notNull(),
    responseStatus: int('response_status').notNull(),
    responseBody: mediumtext('response_body').notNull(),
    createdAt: timestamp('created_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.key] }), index('idempotency_keys_created_at').on(t.createdAt)],
)
