import { index, mysqlEnum, mysqlTable } from 'drizzle-orm/mysql-core'
import { id, timestamp, won } from './columns'

export const LEDGER_TYPES = ['CHARGE', 'PAYMENT', 'REFUND'] as const

export const balanceLedger = mysqlTable(
  'balance_ledger',
  {
    id: id('id').autoincrement().primaryKey(),
    userId: id('user_id').notNull(),
    type: mysqlEnum('type', LEDGER_TYPES).notNull(),
    /** Signed: charges and refunds positive, payments negative. */
    amount: won('amount').notNull(),
    balanceAfter: won('balance_after').notNull(),
    orderId: id('order_id'),
    createdAt: timestamp('created_at').notNull(),
  },
  (t) => [
    index('balance_ledger_user_id_id').on(t.userId, t.id),
    index('balance_ledger_order_id').on(t.orderId),
  ],
)
