import { index, mysqlEnum, mysqlTable, uniqueIndex } from 'drizzle-orm/mysql-core'
import { id, timestamp } from './columns'

/** EXPIRED is derived at read time from expiresAt, so it is not a stored status. */
export const USER_COUPON_STATUSES = ['AVAILABLE', 'USED'] as const

export const userCoupons = mysqlTable(
  'user_coupons',
  {
    id: id('id').autoincrement().primaryKey(),
    couponId: id('coupon_id').notNull(),
    userId: id('user_id').notNull(),
    status: mysqlEnum('status', USER_COUPON_STATUSES).notNull().default('AVAILABLE'),
    issuedAt: timestamp('issued_at').notNull(),
    expiresAt: timestamp('expires_at').notNull(),
    usedAt: timestamp('used_at'),
    orderId: id('order_id'),
  },
  (t) => [
    // The backstop behind the Redis issuing script: one coupon per user, whatever Redis believed.
    uniqueIndex('user_coupons_coupon_user').on(t.couponId, t.userId),
    index('user_coupons_user_id_id').on(t.userId, t.id),
  ],
)
