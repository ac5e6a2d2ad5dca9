import { sql } from 'drizzle-orm'
import { check, int, mysqlEnum, mysqlTable, varchar } from 'drizzle-orm/mysql-core'
import { id, timestamp, won } from './columns'

export const COUPON_TYPES = ['FIXED', 'PERCENT'] as const

export const coupons = mysqlTable(
  'coupons',
  {
    id: id('id').autoincrement().primaryKey(),
    name: varchar('name', { length: 200 }).notNull(),
    type: mysqlEnum('type', COUPON_TYPES).notNull(),
    /** Won for FIXED, percent (1..100) for PERCENT. */
    value: won('value').notNull(),
    minOrderAmount: won('min_order_amount').notNull().default(0),
    totalQuantity: int('total_quantity').notNull(),
    issuedQuantity: int('issued_quantity').notNull().default(0),
    issueStartsAt: timestamp('issue_starts_at'),
    issueEndsAt: timestamp('issue_ends_at'),
    validDays: int('valid_days').notNull(),
    createdAt: timestamp('created_at').notNull(),
  },
  (t) => [check('coupons_not_over_issued', sql`${t.issuedQuantity} <= ${t.totalQuantity}`)],
)

export type CouponRow = typeof coupons.$inferSelect
