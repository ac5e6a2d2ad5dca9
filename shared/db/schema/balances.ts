import { sql } from 'drizzle-orm'
import { check, mysqlTable } from 'drizzle-orm/mysql-core'
import { id, timestamp, won } from './columns'

export const balances = mysqlTable(
  'balances',
  {
    userId: id('user_id').primaryKey(),
    balance: won('balance').notNull().default(0),
    createdAt: timestamp('created_at').notNull(),
    updatedAt: timestamp('updated_at').notNull(),
  },
  (t) => [check('balances_non_negative', sql`${t.balance} >= 0`)],
)
